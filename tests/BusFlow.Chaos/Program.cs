using System.Diagnostics;
using System.Globalization;
using BusFlow.Chaos;

// The chaos runner (docs/reliability.md): `dotnet run -c Release --project tests/BusFlow.Chaos --
// --profile long` through tests/chaos.sh, which starts the servers; tests/run.sh runs `--profile short`.
var settings = ChaosSettings.Parse(args);
// The commit the processes' host was built from: taken now, as commits made during a long run are not in it.
var commit = BenchMachine.Commit();
var run = DateTime.UtcNow.ToString("MMddHHmmss", CultureInfo.InvariantCulture) + Random.Shared.Next(100, 999).ToString(CultureInfo.InvariantCulture);
Console.WriteLine($"chaos run {run}: profile {settings.Profile}, {settings.Load.TotalSeconds:0} s of load at {settings.Rate} pipelines/s, a fault every {settings.FaultEvery.TotalSeconds:0.#} s{(settings.RandomFaults ? ", kinds at random" : ", kinds in turn")}, seed {settings.Seed}");
Console.WriteLine($"host: {RoleProcess.HostDescription}");
await using var servers = await ChaosServers.Create();
await using var topology = await Topology.StartAsync(servers, edges: 2, sagas: 2, workers: 2);
Console.WriteLine($"started {string.Join(", ", topology.Processes.Select(p => $"{p.Name} {p.BaseUri}"))}{(ChaosServers.ClusterNodes.Count > 0 ? $" on a RabbitMQ cluster of {ChaosServers.ClusterNodes.Count} nodes with quorum queues" : "")}");
await using var tap = await BusTap.StartAsync(servers.HostSettings());
var random = new Random(settings.Seed);
var watchers = new Watchers(() => topology.Edge(random), random);
var load = new LoadDriver(run, () => topology.Edge(random), watchers);
var clock = Stopwatch.StartNew();
var origin = DateTimeOffset.UtcNow;
using var end = new CancellationTokenSource();
var tagged = new Subscriber("on the run's tag", "websocket");
var finals = new Subscriber("on final events", "websocket");
var everyTask = new[]
{
    watchers.WatchAllAsync(tagged, $$"""
        "tags":{"chaos":"{{run}}"}
        """, TimeSpan.FromSeconds(20), end.Token),
    watchers.WatchAllAsync(finals, """
        "eventTypes":["PipelineCompleted","PipelineFailed","PipelineCancelled"]
        """, TimeSpan.FromSeconds(30), end.Token),
};
var memory = new Memory(topology, clock);
var sampling = memory.SampleAsync(TimeSpan.FromSeconds(5), end.Token);

using var loadStop = new CancellationTokenSource(settings.Load);
// The drain's time counts from when the last fault was repaired (below); this bound only ends a run
// whose faults never finish.
using var abort = new CancellationTokenSource(settings.Load + settings.Drain + TimeSpan.FromMinutes(5));
var faults = new FaultInjector(topology, load, tap, random, clock, abort.Token);
var faulting = faults.RunAsync(settings.FaultEvery, settings.RandomFaults, loadStop.Token, settings.Kinds);
await load.RunAsync(settings.Rate, loadStop.Token, abort.Token);
var loadSeconds = clock.Elapsed.TotalSeconds;
Console.WriteLine($"load stopped at {loadSeconds:0} s: {load.Started.Count} pipelines started; waiting for the faults in progress and for every pipeline's end");
await faulting;
abort.CancelAfter(settings.Drain);
await load.DrainAsync();
if (abort.IsCancellationRequested)
{
    Console.WriteLine($"drain cut off after {settings.Drain.TotalSeconds:0} s");
}

// The `*` subscribers catch up with the store's last position (or are cut off).
var last = await LastPositionAsync(servers);
var catchUp = Stopwatch.StartNew();
while ((tagged.Last(byPosition: true) < last || finals.Events.Count < load.Started.Count) && catchUp.Elapsed < TimeSpan.FromSeconds(60))
{
    await Task.Delay(250);
}

await end.CancelAsync();
await Task.WhenAll(everyTask);
await sampling;
var (checks, stored, tally) = await Checks.RunAsync(servers, load, faults.Failed, await tap.DeadLetteredAsync(), [(tagged, _ => true), (finals, r => Subscriber.IsTerminal(r.Type))]);
checks.Insert(0, new Check("the driver ran without errors of its own", load.Sent, [.. load.Errors.Take(5)]));
var report = Report.Build(settings, run, commit, load, faults.Injected, checks, tally, stored, origin, [tagged, finals], memory, topology, clock.Elapsed, loadSeconds);

// The processes' last lines come before the table, so that a log cut to its end (a CI summary) still
// shows the table and which checks broke.
// Stack frames left out, and the processes a failed fault names last, nearest the table.
var named = faults.Failed.SelectMany(f => topology.Processes.Where(p => f.Contains(p.Name, StringComparison.Ordinal))).ToHashSet();
RoleProcess[] tails = checks.All(c => c.Held) && !args.Contains("--tails") ? [] : [.. topology.Processes.OrderBy(named.Contains)];
foreach (var process in tails)
{
    Console.WriteLine($"--- {process.Name}: last lines ---\n{process.ShortTail(named.Contains(process) ? 80 : 30)}");
}

Console.WriteLine(report);
if (settings.Docs)
{
    Report.WriteDocs(report);
}

var broken = checks.Where(c => !c.Held).ToList();
Console.WriteLine(broken.Count == 0
    ? $"chaos run {run}: every check held"
    : $"chaos run {run}: {broken.Count} check(s) broken: {string.Join("; ", broken.Select(c => $"{c.Name} ({c.Broken.Count}: {string.Join("; ", Checks.Examples(c))})"))}");
return broken.Count == 0 ? 0 : 1;

static async Task<long> LastPositionAsync(ChaosServers servers)
{
    await using var connection = new Npgsql.NpgsqlConnection(servers.ConnectionString);
    await connection.OpenAsync();
    await using var command = new Npgsql.NpgsqlCommand("""SELECT coalesce(max("Position"), 0) FROM busflow_events""", connection);
    return (long)(await command.ExecuteScalarAsync())!;
}
