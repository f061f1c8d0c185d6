using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Reflection;
using System.Text;
using System.Text.Json;

namespace BusFlow.Benchmarks;

/// <summary>
/// <c>e2e-scaling</c>: the <c>demo</c> throughput measurement on RabbitMQ + PostgreSQL with BusFlow split
/// into processes the way docker-compose.yml splits it: BusFlow.Host with <c>BusFlow:Roles</c> = saga (one),
/// worker (1, 2, 4) and edge (1, 2), each edge with one WebSocket subscriber to <c>*</c> that must receive
/// every event. This process only starts pipelines on the bus and counts PipelineCompleted as a bus subscriber.
/// </summary>
public static class E2eScaling
{
    private sealed record Row(int Workers, int Edges, List<ThroughputRun> Runs);

    public static async Task Run(IReadOnlyList<string> args, bool lenient)
    {
        var settings = ThroughputSettings.Parse(args, lenient);
        var total = Stopwatch.StartNew();
        var loadBefore = BenchMachine.LoadAverage();
        // Taken at the start: editing the docs while a run goes on must not change what it says it measured.
        var commit = BenchMachine.Commit();
        Console.WriteLine("e2e-scaling: BusFlow.Host processes by role on RabbitMQ + PostgreSQL, demo pipelines completed per second");
        Console.WriteLine(BenchMachine.Invariant($"  machine: {BenchMachine.Describe()}; load average before start: {loadBefore}"));
        Console.WriteLine(BenchMachine.Invariant($"  settings: {settings.Repetitions} repetitions after a warm-up per topology; {settings.ScalingPipelines} pipelines per measurement; workers {string.Join(",", settings.Workers)}; edges {string.Join(",", settings.Edges)}"));
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };

        await using var database = await BenchDatabase.Create();
        await using var vhost = await BenchVirtualHost.Create();
        var servers = await ServerVersions(database, vhost);
        Console.WriteLine(BenchMachine.Invariant($"  {servers}; database {database.Name}, virtual host {vhost.Name}"));
        var settingsFor = (string role) =>
        {
            var s = vhost.BusFlowSettings();
            s["BusFlow:Roles"] = role;
            s["BusFlow:Store:Provider"] = "Postgres";
            s["BusFlow:Store:ConnectionString"] = database.ConnectionString;
            s["BusFlow:Store:ApplyMigrations"] = "true";
            return s;
        };

        var started = Stopwatch.StartNew();
        // Combined: every process runs the saga and the worker, the way co-located steps run fastest.
        var sagaRole = settings.Combined ? "saga,worker" : "saga";
        var workerRole = settings.Combined ? "saga,worker" : "worker";
        await using var saga = await HostProcess.Start("saga", settingsFor(sagaRole), stop.Token);
        var workers = new List<HostProcess>();
        var edges = new List<HostProcess>();
        await using var driver = await BusFlowE2eHost.StartDriver(vhost);
        Console.WriteLine(BenchMachine.Invariant($"  saga process {saga.ProcessId} and driver started in {started.Elapsed.TotalSeconds:0.0} s"));
        var rows = new List<Row>();
        try
        {
            // Go through the topologies adding or removing one kind of process at a time.
            var topologies = settings.Edges.SelectMany((e, i) => (i % 2 == 0 ? settings.Workers : settings.Workers.Reverse()).Select(w => (Workers: w, Edges: e))).ToList();
            foreach (var (workerCount, edgeCount) in topologies)
            {
                started.Restart();
                await Resize(workers, workerCount, workerRole, settingsFor, stop.Token);
                await Resize(edges, edgeCount, "edge", settingsFor, stop.Token);
                var sockets = new List<SocketSubscriber>();
                try
                {
                    foreach (var edge in edges)
                    {
                        sockets.Add(await SocketSubscriber.Connect(edge.WebSocketUri, stop.Token));
                    }

                    Console.WriteLine(BenchMachine.Invariant($"  {workerCount} worker(s), {edgeCount} edge(s): processes ready and subscribers connected in {started.Elapsed.TotalSeconds:0.0} s"));
                    var row = new Row(workerCount, edgeCount, []);
                    rows.Add(row);
                    // The saga process lives through every topology: warm it up longer the first time (tiered JIT, pools).
                    var warmUps = rows.Count == 1 ? 3 : 1;
                    for (var rep = 1 - warmUps; rep <= settings.Repetitions; rep++)
                    {
                        var run = await Measure(driver, saga, workers, edges, sockets, settings, stop.Token);
                        var label = rep <= 0 ? "warm-up" : BenchMachine.Invariant($"rep {rep}");
                        Console.WriteLine(BenchMachine.Invariant($"    {label,-7} {run.Pipelines} pipelines in {run.Elapsed.TotalSeconds,6:0.00} s = {run.PerSecond,6:0.0}/s, {run.Events} events at the bus subscriber, {run.Failed} failed, WebSocket subscribers received {string.Join(" and ", run.SocketEvents!)} events; busflow processes {run.BusFlowProcessCores:0.00} cores; {run.Resources}"));
                        if (rep > 0)
                        {
                            row.Runs.Add(run);
                        }
                    }
                }
                finally
                {
                    foreach (var socket in sockets)
                    {
                        await socket.DisposeAsync();
                    }
                }
            }
        }
        finally
        {
            foreach (var process in workers.Concat(edges))
            {
                await process.DisposeAsync();
            }
        }

        var markdown = Table(rows, settings, servers, loadBefore, total.Elapsed, commit);
        Console.WriteLine();
        Console.WriteLine(markdown);
        if (settings.WriteDocs)
        {
            Console.WriteLine("  written to " + BenchMachine.WriteSection("e2e-scaling", markdown));
        }
    }

    private static async Task Resize(List<HostProcess> processes, int count, string role, Func<string, Dictionary<string, string?>> settingsFor, CancellationToken cancellationToken)
    {
        while (processes.Count > count)
        {
            var last = processes[^1];
            processes.RemoveAt(processes.Count - 1);
            await last.DisposeAsync();
        }

        // Start the missing ones side by side: each takes a few seconds of start-up, mostly JIT.
        var added = await Task.WhenAll(Enumerable.Range(processes.Count, count - processes.Count).Select(i => HostProcess.Start(BenchMachine.Invariant($"{role}-{i + 1}"), settingsFor(role), cancellationToken)));
        processes.AddRange(added);
    }

    private static async Task<ThroughputRun> Measure(BusFlowE2eHost driver, HostProcess saga, List<HostProcess> workers, List<HostProcess> edges, List<SocketSubscriber> sockets, ThroughputSettings settings, CancellationToken cancellationToken)
    {
        var processes = new[] { saga }.Concat(workers).Concat(edges).ToList();
        foreach (var socket in sockets)
        {
            socket.Reset();
        }

        var cpuBefore = processes.Sum(p => p.CpuSeconds());
        var clock = Stopwatch.StartNew();
        var meter = new ResourceMeter();
        var run = await driver.RunAsync(E2eShapes.Demo, settings.ScalingPipelines, settings.Timeout, cancellationToken);
        // Every WebSocket subscriber should get every event; give the edges a little time to relay the last ones.
        var expected = (long)settings.ScalingPipelines * E2eShapes.BusFlowEvents(E2eShapes.Demo);
        var deadline = Stopwatch.GetTimestamp() + (10 * Stopwatch.Frequency);
        while (sockets.Any(s => s.Events < expected) && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(10, cancellationToken);
        }

        var resources = meter.Stop(settings.ScalingPipelines);
        var busflowCores = (processes.Sum(p => p.CpuSeconds()) - cpuBefore) / clock.Elapsed.TotalSeconds;
        // The BusFlow.Host processes are "dotnet" to ResourceMeter, so they are inside its "other": take them out.
        return run with
        {
            Resources = resources with { OtherCores = Math.Max(0, resources.OtherCores - busflowCores) },
            BusFlowProcessCores = busflowCores,
            SocketEvents = [.. sockets.Select(s => s.Events)],
        };
    }

    private static string Table(List<Row> rows, ThroughputSettings settings, string servers, string loadBefore, TimeSpan elapsed, string commit)
    {
        var md = new StringBuilder();
        var expected = settings.ScalingPipelines * E2eShapes.BusFlowEvents(E2eShapes.Demo);
        md.AppendLine(BenchMachine.Invariant($"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC at commit {commit} on {BenchMachine.Describe()}; {servers}."));
        md.AppendLine(BenchMachine.Invariant($"Load average before the run {loadBefore}, after {BenchMachine.LoadAverage()}; the run took {elapsed.TotalSeconds:0} s."));
        md.AppendLine(BenchMachine.Invariant($"Medians of {settings.Repetitions} repetitions after one warm-up per topology (three for the first); {settings.ScalingPipelines} `demo` pipelines started at once per repetition ({expected} events). {(settings.Combined ? "Every BusFlow process runs the saga and the worker (`--combined`): \"workers\" counts the processes beyond the first" : "One saga process throughout")}. Command: `dotnet run -c Release --project tests/BusFlow.Benchmarks -- e2e-scaling`."));
        md.AppendLine();
        md.AppendLine("| workers | edges | pipelines/s | vs 1 worker, 1 edge | cpu BusFlow processes | cpu driver | cpu postgres | cpu rabbitmq | cpu other | cpu ms/pipeline | events each WebSocket subscriber received |");
        md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        var baseline = rows.FirstOrDefault(r => r.Workers == settings.Workers.Min() && r.Edges == settings.Edges.Min()) ?? rows[0];
        var baseRate = BenchMachine.Median(baseline.Runs.Select(r => r.PerSecond));
        foreach (var row in rows.OrderBy(r => r.Edges).ThenBy(r => r.Workers))
        {
            var rate = BenchMachine.Median(row.Runs.Select(r => r.PerSecond));
            var use = row.Runs.Select(r => r.Resources!).ToList();
            var busflow = BenchMachine.Median(row.Runs.Select(r => r.BusFlowProcessCores ?? 0));
            var driver = BenchMachine.Median(use.Select(u => u.BusFlowCores));
            var postgres = BenchMachine.Median(use.Select(u => u.PostgresCores));
            var rabbit = BenchMachine.Median(use.Select(u => u.RabbitMqCores));
            // CPU per pipeline of everything that takes part (BusFlow processes, driver, PostgreSQL, RabbitMQ) at the median rate.
            var msPerPipeline = BenchMachine.Median(row.Runs.Select(r => (r.BusFlowProcessCores!.Value + r.Resources!.BusFlowCores + r.Resources.PostgresCores + r.Resources.RabbitMqCores) * 1000 / r.PerSecond));
            var sockets = row.Runs.SelectMany(r => r.SocketEvents!).ToList();
            var received = sockets.All(e => e == expected) ? BenchMachine.Invariant($"all {expected} in every repetition") : string.Join(", ", row.Runs.Select(r => string.Join("/", r.SocketEvents!)));
            md.AppendLine(BenchMachine.Invariant(
                $"| {row.Workers} | {row.Edges} | {rate:0} | {(row == baseline ? "baseline" : (rate / baseRate).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture))} | {busflow:0.00} | {driver:0.00} | {postgres:0.00} | {rabbit:0.00} | {BenchMachine.Median(use.Select(u => u.OtherCores)):0.00} | {msPerPipeline:0.0} | {received} |"));
        }

        return md.ToString();
    }

    private static async Task<string> ServerVersions(BenchDatabase database, RabbitMqVirtualHost vhost)
    {
        await using var data = Npgsql.NpgsqlDataSource.Create(database.ConnectionString);
        await using var version = data.CreateCommand("SHOW server_version");
        return BenchMachine.Invariant($"PostgreSQL {(string)(await version.ExecuteScalarAsync())!}, {await vhost.ServerVersion()}");
    }
}

/// <summary>
/// BusFlow.Host run from its build output (<c>dotnet BusFlow.Host.dll</c>, so the process measured is the
/// host itself, not <c>dotnet run</c>) with settings as environment variables, on a free port; ready when
/// <c>/health/ready</c> answers 200. Stopped with SIGTERM (graceful), killed if it does not stop in 15 s.
/// </summary>
public sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _directory;
    private readonly List<string> _output = [];

    private HostProcess(string name, Process process, Uri baseUri, string directory)
    {
        Name = name;
        _process = process;
        BaseUri = baseUri;
        _directory = directory;
    }

    public string Name { get; }

    public int ProcessId => _process.Id;

    public Uri BaseUri { get; }

    public Uri WebSocketUri => new($"ws://{BaseUri.Authority}/ws");

    /// <summary>The host built beside this benchmark (same configuration), by the project reference in the .csproj.</summary>
    public static string HostAssembly
    {
        get
        {
            var configuration = typeof(HostProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
            var path = Path.Combine(BenchMachine.RepositoryRoot, "src", "BusFlow.Host", "bin", configuration, "net10.0", "BusFlow.Host.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"BusFlow.Host is not built at {path}: dotnet build -c {configuration} src/BusFlow.Host");
        }
    }

    public static async Task<HostProcess> Start(string name, Dictionary<string, string?> settings, CancellationToken cancellationToken)
    {
        var port = FreePort();
        var directory = Directory.CreateTempSubdirectory("busflow-e2e-host-").FullName;
        var start = new ProcessStartInfo("dotnet", [HostAssembly, "--urls", $"http://127.0.0.1:{port}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = directory,
        };
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (key, value) in settings)
        {
            start.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start BusFlow.Host");
        var host = new HostProcess(name, process, new Uri($"http://127.0.0.1:{port}"), directory);
        process.OutputDataReceived += (_, e) => host.Record(e.Data);
        process.ErrorDataReceived += (_, e) => host.Record(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = host.BaseUri, Timeout = TimeSpan.FromSeconds(10) };
        var deadline = Stopwatch.GetTimestamp() + (120 * Stopwatch.Frequency);
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"BusFlow.Host ({name}) exited with {process.ExitCode}:\n{host.Output}");
            }

            try
            {
                using var ready = await http.GetAsync(new Uri("/health/ready", UriKind.Relative), cancellationToken);
                if (ready.IsSuccessStatusCode)
                {
                    return host;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                await host.DisposeAsync();
                throw new TimeoutException($"BusFlow.Host ({name}) not ready after 120 s:\n{host.Output}");
            }

            await Task.Delay(200, cancellationToken);
        }
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return string.Join('\n', _output.TakeLast(60));
            }
        }
    }

    public double CpuSeconds() => ProcessCpu.Seconds(_process.Id);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            using (var term = Process.Start(new ProcessStartInfo("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])))
            {
                await term!.WaitForExitAsync();
            }

            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await _process.WaitForExitAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void Record(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.Add(line);
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>A WebSocket client of one edge, subscribed to <c>*</c> (live only), counting the events it receives.</summary>
public sealed class SocketSubscriber : IAsyncDisposable
{
    private readonly ClientWebSocket _socket;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly TaskCompletionSource _subscribed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _events;
    private long _completed;

    private SocketSubscriber(ClientWebSocket socket)
    {
        _socket = socket;
        _loop = Task.Run(ReadLoop);
    }

    public long Events => Interlocked.Read(ref _events);

    public long Completed => Interlocked.Read(ref _completed);

    public static async Task<SocketSubscriber> Connect(Uri uri, CancellationToken cancellationToken)
    {
        var socket = new ClientWebSocket();
        await socket.ConnectAsync(uri, cancellationToken);
        await socket.SendAsync("""{"type":"subscribe","pipelineId":"*"}"""u8.ToArray(), WebSocketMessageType.Text, true, cancellationToken);
        var subscriber = new SocketSubscriber(socket);
        await subscriber._subscribed.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
        return subscriber;
    }

    public void Reset()
    {
        Interlocked.Exchange(ref _events, 0);
        Interlocked.Exchange(ref _completed, 0);
    }

    private async Task ReadLoop()
    {
        var buffer = new byte[64 * 1024];
        var message = new MemoryStream();
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var result = await _socket.ReceiveAsync(buffer, _stop.Token);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    break;
                }

                message.Write(buffer, 0, result.Count);
                if (!result.EndOfMessage)
                {
                    continue;
                }

                using (var json = JsonDocument.Parse(message.GetBuffer().AsMemory(0, (int)message.Length)))
                {
                    var type = json.RootElement.GetProperty("type").GetString();
                    switch (type)
                    {
                        case "subscribed":
                            _subscribed.TrySetResult();
                            break;
                        case "error":
                            _subscribed.TrySetException(new InvalidOperationException("edge answered " + json.RootElement.GetRawText()));
                            break;
                        case "pong" or "unsubscribed":
                            break;
                        default:
                            Interlocked.Increment(ref _events);
                            if (type == "PipelineCompleted")
                            {
                                Interlocked.Increment(ref _completed);
                            }

                            break;
                    }
                }

                message.SetLength(0);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (WebSocketException e)
        {
            _subscribed.TrySetException(e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }

        _socket.Abort();
        _socket.Dispose();
        _stop.Dispose();
    }
}
