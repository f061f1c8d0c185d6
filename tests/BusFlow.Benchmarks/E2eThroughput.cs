using System.Diagnostics;
using System.Globalization;
using System.Text;
using BusFlow.Store;
using Npgsql;

namespace BusFlow.Benchmarks;

/// <summary>Sizes of the <c>e2e-throughput</c> and <c>e2e-scaling</c> scenarios.</summary>
public sealed record ThroughputSettings
{
    /// <summary>Counted repetitions, after uncounted warm-ups of the same size.</summary>
    public int Repetitions { get; init; } = 3;

    /// <summary>
    /// Warm-ups repeat (up to <see cref="MaxWarmUps"/>) until neither system compiled more than this
    /// many methods in one (counted for the whole benchmark process): the counted repetitions measure a process past tiered JIT compilation,
    /// as a long-running service is, not its first seconds.
    /// </summary>
    public int WarmJitMethods { get; init; } = WarmedRepetitions.DefaultJitMethods;

    /// <summary>At most this many warm-ups (at least one), however much the last one compiled.</summary>
    public int MaxWarmUps { get; init; } = WarmedRepetitions.DefaultMaxWarmUps;

    /// <summary>BusFlow pipelines started at once per measurement on the in-memory transport with SQLite.</summary>
    public int InMemoryPipelines { get; init; } = 150;

    /// <summary>BusFlow pipelines started at once per measurement on RabbitMQ with PostgreSQL.</summary>
    public int RabbitMqPipelines { get; init; } = 100;

    /// <summary>Courier runs this many times BusFlow's count of routing slips per measurement, so that its (much shorter) measurements last long enough to time.</summary>
    public int CourierFactor { get; init; } = 4;

    /// <summary>Pipelines started at once per measurement in the scaling scenario.</summary>
    public int ScalingPipelines { get; init; } = 60;

    public string[] Setups { get; init; } = [E2eThroughput.InMemory, E2eThroughput.RabbitMq];

    public string[] Shapes { get; init; } = [E2eShapes.Sequential, E2eShapes.Demo];

    public int[] Workers { get; init; } = [1, 2, 4];

    public int[] Edges { get; init; } = [1, 2];

    /// <summary>Steps run at once per worker (BusFlow's default) and per Courier execute endpoint.</summary>
    public int Concurrency { get; init; } = 32;

    /// <summary>BusFlow runs steps co-located with its saga (<see cref="BusFlowStoreOptions.ColocateSteps"/>); off sends every step through the broker.</summary>
    public bool Colocate { get; init; } = true;

    /// <summary>
    /// e2e-scaling: every BusFlow process runs the saga and the worker (steps co-located), and
    /// <see cref="Workers"/> counts the processes beyond the first; otherwise one saga process and
    /// that many worker processes.
    /// </summary>
    public bool Combined { get; init; }

    /// <summary>How BusFlow publishes events (<see cref="BusFlowStoreOptions.EventPublishing"/>), its default unless said.</summary>
    public EventPublishMode EventPublishing { get; init; } = new BusFlowStoreOptions().EventPublishing;

    /// <summary>Whether BusFlow keeps the states it committed (<see cref="BusFlowStoreOptions.CachePipelineStates"/>).</summary>
    public bool CacheStates { get; init; } = new BusFlowStoreOptions().CachePipelineStates;

    /// <summary>What the BusFlow options of a run were, for its output.</summary>
    public string BusFlowVariant => $"co-located steps {(Colocate ? "on" : "off")}, events {EventPublishing.ToString().ToLowerInvariant()}, state cache {(CacheStates ? "on" : "off")}";

    /// <summary>Write the table into docs/performance.md between the scenario's markers.</summary>
    public bool WriteDocs { get; init; } = true;

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(180);

    /// <summary>
    /// Reads <c>--reps N --pipelines N --inmem-pipelines N --rabbit-pipelines N --scaling-pipelines N
    /// --setups inmem,rabbit --shapes seq3,demo --workers 1,2,4 --edges 1,2 --concurrency N --colocate on|off
    /// --event-publishing individual|batched --cache-states on|off --no-docs</c>.
    /// Unknown options are an error unless <paramref name="lenient"/> (the <c>e2e</c> verb passes every
    /// scenario the same arguments).
    /// </summary>
    public static ThroughputSettings Parse(IReadOnlyList<string> args, bool lenient)
    {
        var s = new ThroughputSettings();
        for (var i = 0; i < args.Count; i++)
        {
            int Next() => int.Parse(args[++i], CultureInfo.InvariantCulture);
            string[] List() => args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            string Word(params string[] allowed)
            {
                var option = args[i];
                var value = args[++i].ToLowerInvariant();
                return allowed.Contains(value) ? value : throw new ArgumentException($"{option}: '{value}' is not one of {string.Join(", ", allowed)}");
            }

            switch (args[i])
            {
                case "--reps": s = s with { Repetitions = Next() }; break;
                case "--max-warm-ups": s = s with { MaxWarmUps = Math.Max(1, Next()) }; break;
                case "--warm-jit-methods": s = s with { WarmJitMethods = Next() }; break;
                case "--pipelines": var p = Next(); s = s with { InMemoryPipelines = p, RabbitMqPipelines = p, ScalingPipelines = p }; break;
                case "--inmem-pipelines": s = s with { InMemoryPipelines = Next() }; break;
                case "--rabbit-pipelines": s = s with { RabbitMqPipelines = Next() }; break;
                case "--scaling-pipelines": s = s with { ScalingPipelines = Next() }; break;
                case "--setups": s = s with { Setups = List() }; break;
                case "--shapes": s = s with { Shapes = List() }; break;
                case "--workers": s = s with { Workers = [.. List().Select(v => int.Parse(v, CultureInfo.InvariantCulture))] }; break;
                case "--edges": s = s with { Edges = [.. List().Select(v => int.Parse(v, CultureInfo.InvariantCulture))] }; break;
                case "--courier-factor": s = s with { CourierFactor = Next() }; break;
                case "--concurrency": s = s with { Concurrency = Next() }; break;
                case "--timeout": s = s with { Timeout = TimeSpan.FromSeconds(Next()) }; break;
                case "--no-docs": s = s with { WriteDocs = false }; break;
                case "--combined": s = s with { Combined = true }; break;
                case "--colocate": s = s with { Colocate = Word("on", "off") == "on" }; break;
                case "--cache-states": s = s with { CacheStates = Word("on", "off") == "on" }; break;
                case "--event-publishing": s = s with { EventPublishing = Enum.Parse<EventPublishMode>(Word("individual", "batched"), ignoreCase: true) }; break;
                default:
                    if (!lenient)
                    {
                        throw new ArgumentException($"Unknown argument '{args[i]}'. Options: --reps --max-warm-ups --warm-jit-methods --pipelines --inmem-pipelines --rabbit-pipelines --scaling-pipelines --courier-factor --setups inmem,rabbit --shapes seq3,demo --workers 1,2,4 --edges 1,2 --concurrency --timeout --colocate on|off --event-publishing individual|batched --cache-states on|off --no-docs");
                    }

                    // Another scenario's option: skip its value too.
                    if (i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    {
                        i++;
                    }

                    break;
            }
        }

        if (s.Setups.Except([E2eThroughput.InMemory, E2eThroughput.RabbitMq]).FirstOrDefault() is { } setup)
        {
            throw new ArgumentException($"--setups: unknown setup '{setup}' (inmem, rabbit)");
        }

        if (s.Shapes.Except([E2eShapes.Sequential, E2eShapes.Demo]).FirstOrDefault() is { } shape)
        {
            throw new ArgumentException($"--shapes: unknown shape '{shape}' (seq3, demo)");
        }

        return s;
    }
}

/// <summary>
/// <c>e2e-throughput</c>: pipelines completed per second, BusFlow beside the same steps as MassTransit
/// Courier routing slips on the same transport, for a three-step sequential pipeline and the
/// <c>demo</c> DAG; on the in-memory transport with a SQLite store and on RabbitMQ with PostgreSQL.
/// </summary>
public static class E2eThroughput
{
    public const string InMemory = "inmem";
    public const string RabbitMq = "rabbit";

    private sealed record Row(string Setup, string Shape, string System, int Pipelines, List<ThroughputRun> Runs);

    public static async Task Run(IReadOnlyList<string> args, bool lenient)
    {
        var settings = ThroughputSettings.Parse(args, lenient);
        var total = Stopwatch.StartNew();
        var loadBefore = BenchMachine.LoadAverage();
        // Taken at the start: editing the docs while a run goes on must not change what it says it measured.
        var commit = BenchMachine.Commit();
        Console.WriteLine("e2e-throughput: BusFlow vs MassTransit Courier, pipelines completed per second");
        Console.WriteLine(BenchMachine.Invariant($"  machine: {BenchMachine.Describe()}; load average before start: {loadBefore}"));
        Console.WriteLine(BenchMachine.Invariant($"  settings: {settings.Repetitions} repetitions after up to {settings.MaxWarmUps} warm-ups (until one compiles at most {settings.WarmJitMethods} methods); {settings.InMemoryPipelines} pipelines per measurement in memory, {settings.RabbitMqPipelines} on RabbitMQ; concurrency {settings.Concurrency}; BusFlow: {settings.BusFlowVariant}"));
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };

        var rows = new List<Row>();
        var warmUpsBySetup = new Dictionary<string, int>();
        string? servers = null;
        foreach (var setup in settings.Setups)
        {
            var pipelines = setup == InMemory ? settings.InMemoryPipelines : settings.RabbitMqPipelines;
            await using var resources = await SetupResources.Create(setup);
            servers ??= resources.Servers;
            Console.WriteLine(BenchMachine.Invariant($"  {Label(setup)}: {resources.Describe()}"));
            var started = Stopwatch.StartNew();
            resources.Store.ColocateSteps = settings.Colocate;
            resources.Store.EventPublishing = settings.EventPublishing;
            resources.Store.CachePipelineStates = settings.CacheStates;
            await using var busflow = await BusFlowE2eHost.Start(resources.BusFlowVirtualHost, resources.Store);
            await using var courier = await CourierHost.Start(resources.CourierVirtualHost, settings.Concurrency);
            Console.WriteLine(BenchMachine.Invariant($"    hosts started in {started.Elapsed.TotalSeconds:0.0} s"));
            int Count(IThroughputSystem system) => system == courier ? pipelines * settings.CourierFactor : pipelines;
            var setupRows = settings.Shapes.SelectMany(shape => new IThroughputSystem[] { busflow, courier }.Select(system => new Row(setup, shape, system.Name, Count(system), []))).ToList();
            rows.AddRange(setupRows);
            warmUpsBySetup[setup] = await WarmedRepetitions.RunAsync(settings.Repetitions, settings.MaxWarmUps, settings.WarmJitMethods, async (rep, label) =>
            {
                var jitted = 0L;
                foreach (var shape in settings.Shapes)
                {
                    // Alternate which system goes first, so neither always runs on a machine the other just warmed or tired.
                    IThroughputSystem[] order = rep % 2 == 0 ? [busflow, courier] : [courier, busflow];
                    foreach (var system in order)
                    {
                        var writes = system == busflow ? await resources.WriteTransactionsAsync() : null;
                        var run = await Measure(system, shape, Count(system), settings, stop.Token);
                        if (writes is { } before && await resources.WriteTransactionsAsync() is { } after)
                        {
                            run = run with { WriteTransactionsPerPipeline = (after - before) / (double)run.Pipelines };
                        }

                        jitted = Math.Max(jitted, run.Resources!.MethodsJitted);
                        Console.WriteLine(BenchMachine.Invariant($"    {label,-7} {shape,-5} {system.Name,-8} {run.Pipelines} pipelines in {run.Elapsed.TotalSeconds,6:0.00} s = {run.PerSecond,7:0.0}/s, {run.Events} events, {run.Failed} failed; {run.Resources}{(run.WriteTransactionsPerPipeline is { } c ? BenchMachine.Invariant($"; {c:0.00} PostgreSQL write transactions/pipeline") : "")}"));
                        if (run.Failed > 0)
                        {
                            throw new InvalidOperationException($"{system.Name} {shape}: {run.Failed} pipelines failed");
                        }

                        if (rep > 0)
                        {
                            setupRows.Single(r => r.Shape == shape && r.System == system.Name).Runs.Add(run);
                        }
                    }
                }

                return jitted;
            });
        }

        var markdown = Table(rows, settings, warmUpsBySetup, servers ?? "", loadBefore, total.Elapsed, commit);
        Console.WriteLine();
        Console.WriteLine(markdown);
        if (settings.WriteDocs)
        {
            Console.WriteLine("  written to " + BenchMachine.WriteSection("e2e-throughput", markdown));
        }
    }

    /// <summary>One measurement with the CPU it took.</summary>
    public static async Task<ThroughputRun> Measure(IThroughputSystem system, string shape, int pipelines, ThroughputSettings settings, CancellationToken cancellationToken)
    {
        var meter = new ResourceMeter();
        var run = await system.RunAsync(shape, pipelines, settings.Timeout, cancellationToken);
        return run with { Resources = meter.Stop(pipelines) };
    }

    private static string Label(string setup) => setup == InMemory ? "in-memory transport + SQLite" : "RabbitMQ + PostgreSQL";

    private static string Table(List<Row> rows, ThroughputSettings settings, Dictionary<string, int> warmUps, string servers, string loadBefore, TimeSpan elapsed, string commit)
    {
        var md = new StringBuilder();
        md.AppendLine(BenchMachine.Invariant($"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC at commit {commit} on {BenchMachine.Describe()}; {servers}."));
        md.AppendLine(BenchMachine.Invariant($"Load average before the run {loadBefore}, after {BenchMachine.LoadAverage()}; the run took {elapsed.TotalSeconds:0} s."));
        var warmed = string.Join(", ", warmUps.Select(w => BenchMachine.Invariant($"{w.Value} {(w.Value == 1 ? "warm-up" : "warm-ups")} {(w.Key == InMemory ? "in memory" : "on RabbitMQ")}")));
        md.AppendLine(BenchMachine.Invariant($"Medians of {settings.Repetitions} repetitions after warm-ups repeated until neither system JIT-compiled more than {settings.WarmJitMethods} methods in one (at most {settings.MaxWarmUps}; here {warmed}); each repetition starts all its pipelines at once (Courier {settings.CourierFactor} times as many, so that its shorter runs can be timed); BusFlow with {settings.BusFlowVariant}. Command: `dotnet run -c Release --project tests/BusFlow.Benchmarks -- e2e-throughput`."));
        md.AppendLine();
        md.AppendLine("| setup | pipeline | system | pipelines | pipelines/s | BusFlow / Courier | events/pipeline at the subscriber | cpu benchmark process | cpu postgres | cpu rabbitmq | cpu other | cpu ms/pipeline | PostgreSQL write transactions/pipeline |");
        md.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        var verdicts = new List<string>();
        foreach (var row in rows.Where(r => r.Runs.Count > 0))
        {
            var rate = BenchMachine.Median(row.Runs.Select(r => r.PerSecond));
            var courier = rows.Single(r => r.Setup == row.Setup && r.Shape == row.Shape && r.System == "Courier");
            var courierRate = BenchMachine.Median(courier.Runs.Select(r => r.PerSecond));
            var ratio = row.System == "Courier" ? "baseline" : BenchMachine.Invariant($"{rate / courierRate:0.00}");
            var use = row.Runs.Select(r => r.Resources!).ToList();
            // CPU the benchmark process, PostgreSQL and RabbitMQ spent per pipeline (cores x measured seconds).
            var msPerPipeline = BenchMachine.Median(row.Runs.Select(r => (r.Resources!.BusFlowCores + r.Resources.PostgresCores + r.Resources.RabbitMqCores) * r.Resources.BusFlowMsPerEvent / Math.Max(1e-9, r.Resources.BusFlowCores)));
            md.AppendLine(BenchMachine.Invariant(
                $"| {Label(row.Setup)} | {row.Shape} | {row.System} | {row.Pipelines} | {rate:0} | {ratio} | {BenchMachine.Median(row.Runs.Select(r => (double)r.Events / r.Pipelines)):0.#} | {BenchMachine.Median(use.Select(u => u.BusFlowCores)):0.00} | {BenchMachine.Median(use.Select(u => u.PostgresCores)):0.00} | {BenchMachine.Median(use.Select(u => u.RabbitMqCores)):0.00} | {BenchMachine.Median(use.Select(u => u.OtherCores)):0.00} | {msPerPipeline:0.00} | {(row.Runs.All(r => r.WriteTransactionsPerPipeline.HasValue) ? BenchMachine.Invariant($"{BenchMachine.Median(row.Runs.Select(r => r.WriteTransactionsPerPipeline!.Value)):0.00}") : "")} |"));
            if (row.System == "BusFlow")
            {
                // Issue 12's targets: half of Courier on RabbitMQ + PostgreSQL, a quarter in memory + SQLite.
                var target = row.Setup == InMemory ? 0.25 : 0.5;
                verdicts.Add(BenchMachine.Invariant($"{Label(row.Setup)}, {row.Shape}: BusFlow {rate:0}/s vs Courier {courierRate:0}/s = {rate / courierRate:0.00}, {(rate >= target * courierRate ? "meets" : "misses")} the target (at least {target:0.##} of Courier's throughput)."));
            }
        }

        md.AppendLine();
        foreach (var verdict in verdicts)
        {
            md.AppendLine("- " + verdict);
        }

        return md.ToString();
    }
}

/// <summary>The store and transport one setup runs on, created for the run and removed afterwards.</summary>
public sealed class SetupResources : IAsyncDisposable
{
    private readonly string? _sqlite;
    private readonly BenchDatabase? _database;

    private SetupResources(BusFlowStoreOptions store, string servers, string? sqlite = null, BenchDatabase? database = null, RabbitMqVirtualHost? busflow = null, RabbitMqVirtualHost? courier = null)
    {
        Store = store;
        Servers = servers;
        _sqlite = sqlite;
        _database = database;
        BusFlowVirtualHost = busflow;
        CourierVirtualHost = courier;
    }

    public BusFlowStoreOptions Store { get; }

    public string Servers { get; }

    public RabbitMqVirtualHost? BusFlowVirtualHost { get; }

    public RabbitMqVirtualHost? CourierVirtualHost { get; }

    public static async Task<SetupResources> Create(string setup)
    {
        if (setup == E2eThroughput.InMemory)
        {
            var file = Path.Combine(Path.GetTempPath(), $"busflow-e2e-{Guid.NewGuid():N}.db");
            return new SetupResources(new BusFlowStoreOptions { Provider = StoreProviderKind.Sqlite, ConnectionString = $"Data Source={file}", ApplyMigrations = true }, BenchMachine.Invariant($"SQLite {SqliteVersion()}"), sqlite: file);
        }

        var database = await BenchDatabase.Create();
        var busflow = await BenchVirtualHost.Create();
        var courier = await BenchVirtualHost.Create();
        await using var data = NpgsqlDataSource.Create(database.ConnectionString);
        await using var version = data.CreateCommand("SHOW server_version");
        var servers = BenchMachine.Invariant($"PostgreSQL {(string)(await version.ExecuteScalarAsync())!}, {await busflow.ServerVersion()}, SQLite {SqliteVersion()}");
        return new SetupResources(new BusFlowStoreOptions { Provider = StoreProviderKind.Postgres, ConnectionString = database.ConnectionString, ApplyMigrations = true }, servers, database: database, busflow: busflow, courier: courier);
    }

    /// <summary>
    /// Write transactions PostgreSQL has started so far (null on SQLite): the next transaction id,
    /// read without taking one. Transaction ids are given only to transactions that write (and to
    /// row locks, such as the positioning's share lock of the lease row), at once, so the count
    /// needs no closing of the store's pooled connections (the statistics views lag by up to
    /// seconds unless the backends end, and ending them made every measurement pay for some 64
    /// backends starting and loading their catalog caches again, which a running host does not).
    /// It is server-wide: it counts only BusFlow's store while nothing else writes on the server
    /// (run it without tests beside it). Read-only transactions (the delivery's polls) are not counted.
    /// </summary>
    public async Task<long?> WriteTransactionsAsync()
    {
        if (_database is null)
        {
            return null;
        }

        await using var connection = new NpgsqlConnection(_database.ConnectionString + ";Pooling=false");
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint", connection);
        return (long)(await count.ExecuteScalarAsync())!;
    }

    private static string SqliteVersion()
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection("Data Source=:memory:");
        connection.Open();
        return connection.ServerVersion;
    }

    public string Describe() => _database is not null
        ? $"database {_database.Name}, virtual hosts {BusFlowVirtualHost!.Name} (BusFlow) and {CourierVirtualHost!.Name} (Courier)"
        : $"SQLite file {_sqlite}";

    public async ValueTask DisposeAsync()
    {
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }

        if (BusFlowVirtualHost is not null)
        {
            await BusFlowVirtualHost.DisposeAsync();
        }

        if (CourierVirtualHost is not null)
        {
            await CourierVirtualHost.DisposeAsync();
        }

        if (_sqlite is not null)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            foreach (var file in new[] { _sqlite, _sqlite + "-wal", _sqlite + "-shm" }.Where(File.Exists))
            {
                File.Delete(file);
            }
        }
    }
}
