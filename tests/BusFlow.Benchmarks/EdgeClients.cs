using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace BusFlow.Benchmarks;

/// <summary>
/// When each client received each event of one measurement (Stopwatch ticks). Clients read the
/// pipeline id and seq from the JSON they parsed; event i is seq i / P + 1 of the i % P-th pipeline.
/// </summary>
public sealed class ReceiptBoard
{
    private readonly Dictionary<Guid, int> _pipelines;
    private readonly int _events;
    private readonly long _expected;
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _count;
    private long _stray;

    public ReceiptBoard(PreparedEvents prepared, int clients)
    {
        _pipelines = prepared.PipelineIds.Select((id, i) => (id, i)).ToDictionary(p => p.id, p => p.i);
        _events = prepared.Events;
        Clients = clients;
        At = new long[(long)clients * _events];
        _expected = (long)clients * _events;
        if (_expected == 0)
        {
            _done.TrySetResult();
        }
    }

    public int Clients { get; }

    public int Events => _events;

    /// <summary>Receipt time of event i at client c in [c * Events + i]; 0 if not received.</summary>
    public long[] At { get; }

    public long Count => Interlocked.Read(ref _count);

    /// <summary>Events received that belong to no event of this measurement (late ones of an earlier one).</summary>
    public long Stray => Interlocked.Read(ref _stray);

    public Task Done => _done.Task;

    public void Record(int client, Guid pipelineId, long seq, long at)
    {
        if (!_pipelines.TryGetValue(pipelineId, out var p))
        {
            Interlocked.Increment(ref _stray);
            return;
        }

        var i = ((seq - 1) * _pipelines.Count) + p;
        if (i < 0 || i >= _events || Interlocked.Exchange(ref At[(client * (long)_events) + i], at) != 0)
        {
            Interlocked.Increment(ref _stray);
            return;
        }

        if (Interlocked.Increment(ref _count) == _expected)
        {
            _done.TrySetResult();
        }
    }

    /// <summary>Waits until every client has every event, or throws after <paramref name="timeout"/> saying how far it got.</summary>
    public async Task WaitAsync(TimeSpan timeout, string what)
    {
        try
        {
            await Done.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{what}: {Count:N0} of {_expected:N0} receipts after {timeout.TotalSeconds:0} s ({Stray} stray)");
        }
    }
}

/// <summary>The board the clients write to now (null between measurements).</summary>
public sealed class ReceiptTarget
{
    private ReceiptBoard? _board;

    public ReceiptBoard? Board
    {
        get => Volatile.Read(ref _board);
        set => Volatile.Write(ref _board, value);
    }

    public void Record(int client, Guid pipelineId, long seq, long at) => Board?.Record(client, pipelineId, seq, at);
}

/// <summary>Many clients of one server, connected and subscribed.</summary>
public interface IClientSwarm : IAsyncDisposable
{
    int Count { get; }
}

/// <summary>
/// Real <see cref="ClientWebSocket"/> clients of BusFlow's edge: each subscribes to <c>*</c>, waits
/// for <c>subscribed</c>, then parses every text frame as JSON and records the event's receipt.
/// </summary>
public sealed class EdgeSocketSwarm : IClientSwarm
{
    private static readonly byte[] Subscribe = """{"type":"subscribe","pipelineId":"*"}"""u8.ToArray();
    private readonly List<(ClientWebSocket Socket, Task Loop)> _clients = [];

    public int Count => _clients.Count;

    /// <summary>Connects <paramref name="count"/> clients; each sends <paramref name="subscribe"/> (<c>*</c> when null) and waits for <c>subscribed</c>.</summary>
    public static async Task<EdgeSocketSwarm> ConnectAsync(Uri ws, int count, ReceiptTarget target, int firstClient = 0, byte[]? subscribe = null)
    {
        subscribe ??= Subscribe;
        var swarm = new EdgeSocketSwarm();
        var connected = new (ClientWebSocket, Task)[count];
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, ct) =>
        {
            var socket = new ClientWebSocket();
            await socket.ConnectAsync(ws, ct);
            var subscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var loop = ReceiveLoopAsync(socket, firstClient + i, target, subscribed);
            await socket.SendAsync(subscribe, WebSocketMessageType.Text, true, ct);
            await subscribed.Task.WaitAsync(TimeSpan.FromSeconds(30), ct);
            connected[i] = (socket, loop);
        });
        swarm._clients.AddRange(connected);
        return swarm;
    }

    private static async Task ReceiveLoopAsync(ClientWebSocket socket, int client, ReceiptTarget target, TaskCompletionSource subscribed)
    {
        var buffer = new byte[4096];
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    Array.Resize(ref buffer, buffer.Length * 2);
                }

                var result = await socket.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                length += result.Count;
                if (!result.EndOfMessage)
                {
                    continue;
                }

                var at = Stopwatch.GetTimestamp();
                using (var document = JsonDocument.Parse(buffer.AsMemory(0, length)))
                {
                    var root = document.RootElement;
                    if (root.TryGetProperty("seq", out var seq))
                    {
                        target.Record(client, root.GetProperty("pipelineId").GetGuid(), seq.GetInt64(), at);
                    }
                    else if (root.GetProperty("type").ValueEquals("subscribed"u8))
                    {
                        subscribed.TrySetResult();
                    }
                    else
                    {
                        subscribed.TrySetException(new InvalidOperationException("unexpected reply: " + Encoding.UTF8.GetString(buffer, 0, length)));
                    }
                }

                length = 0;
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            subscribed.TrySetException(ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Parallel.ForEachAsync(_clients, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (client, _) =>
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                if (client.Socket.State == WebSocketState.Open)
                {
                    await client.Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", timeout.Token);
                }

                await client.Loop.WaitAsync(timeout.Token);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or TimeoutException)
            {
            }

            client.Socket.Dispose();
        });
        _clients.Clear();
    }
}

/// <summary>
/// SignalR clients (Microsoft.AspNetCore.SignalR.Client, WebSockets transport, JSON hub protocol),
/// each with a handler for <c>event</c> that receives the event as a <see cref="JsonElement"/>.
/// </summary>
public sealed class HubSwarm : IClientSwarm
{
    private readonly List<HubConnection> _connections = [];

    public int Count => _connections.Count;

    public static async Task<HubSwarm> ConnectAsync(Uri hub, int count, ReceiptTarget target, int firstClient = 0)
    {
        var swarm = new HubSwarm();
        var connected = new HubConnection[count];
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, ct) =>
        {
            var connection = new HubConnectionBuilder()
                .WithUrl(hub, HttpTransportType.WebSockets, o => o.SkipNegotiation = true)
                .Build();
            var client = firstClient + i;
            connection.On<JsonElement>("event", e =>
            {
                var at = Stopwatch.GetTimestamp();
                target.Record(client, e.GetProperty("pipelineId").GetGuid(), e.GetProperty("seq").GetInt64(), at);
            });
            await connection.StartAsync(ct);
            connected[i] = connection;
        });
        swarm._connections.AddRange(connected);
        return swarm;
    }

    public async ValueTask DisposeAsync()
    {
        await Parallel.ForEachAsync(_connections, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (connection, _) => await connection.DisposeAsync());
        _connections.Clear();
    }
}

/// <summary>A server of the <c>edge</c> scenario in its own process (<see cref="EdgeBenchServer"/>), driven over HTTP.</summary>
public sealed class EdgeServerProcess : IAsyncDisposable
{
    private readonly Process _process;

    private EdgeServerProcess(string kind, Process process, Uri baseUri)
    {
        Kind = kind;
        _process = process;
        BaseUri = baseUri;
        Http = new HttpClient { BaseAddress = baseUri, Timeout = TimeSpan.FromMinutes(10) };
    }

    public string Kind { get; }

    public int ProcessId => _process.Id;

    public Uri BaseUri { get; }

    public HttpClient Http { get; }

    /// <summary>Where clients connect: the hub's <c>/hub</c>, or <c>/ws</c> (the edge, or the bare WebSocket floor).</summary>
    public Uri ClientUri => Kind == EdgeBenchServer.SignalR ? new(BaseUri, "/hub") : new($"ws://{BaseUri.Authority}/ws");

    /// <summary>Starts this program again as <c>edge-server KIND</c>, with server GC (what an ASP.NET Core web project gets by default).</summary>
    public static async Task<EdgeServerProcess> StartAsync(string kind)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var start = new ProcessStartInfo(self)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            start.ArgumentList.Add(typeof(EdgeServerProcess).Assembly.Location);
        }

        start.ArgumentList.Add("edge-server");
        start.ArgumentList.Add(kind);
        start.Environment["DOTNET_gcServer"] = "1";
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start " + self);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                Console.Error.WriteLine($"    [{kind} server] {e.Data}");
            }
        };
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            var line = await process.StandardOutput.ReadLineAsync(timeout.Token) ?? throw new InvalidOperationException($"{kind} server exited before it was ready");
            if (line.StartsWith("ready ", StringComparison.Ordinal))
            {
                var server = new EdgeServerProcess(kind, process, new Uri(line["ready ".Length..]));
                _ = Task.Run(async () =>
                {
                    while (await process.StandardOutput.ReadLineAsync() is { } more)
                    {
                        Console.WriteLine($"    [{kind} server] {more}");
                    }
                });
                return server;
            }

            Console.WriteLine($"    [{kind} server] {line}");
        }
    }

    public async Task<T> PostAsync<T>(string path)
    {
        using var response = await Http.PostAsync(new Uri(path, UriKind.Relative), null);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<T>(JsonSerializerOptions.Web))!;
    }

    public async Task<T> GetAsync<T>(string path) => (await Http.GetFromJsonAsync<T>(new Uri(path, UriKind.Relative), JsonSerializerOptions.Web))!;

    /// <summary>Waits until the server counts <paramref name="count"/> subscribers (edge subscriptions or hub connections).</summary>
    public async Task WaitForSubscribersAsync(long count, TimeSpan timeout)
    {
        var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        long seen;
        while ((seen = await GetAsync<long>("bench/subscribers")) != count)
        {
            if (Stopwatch.GetTimestamp() > until)
            {
                throw new TimeoutException($"{Kind} server counts {seen} subscribers, expected {count}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>CPU time the server process used so far (user + system), in seconds.</summary>
    public double CpuSeconds() => ProcessCpu.Seconds(ProcessId);

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        try
        {
            _process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}

/// <summary>CPU time from /proc: a process's (user + system), and the whole machine's busy time.</summary>
public static class ProcessCpu
{
    /// <summary>Seconds of CPU the whole machine was busy so far (all cores, from /proc/stat).</summary>
    public static double Machine()
    {
        if (!File.Exists("/proc/stat"))
        {
            return 0;
        }

        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8)
            .Select(v => long.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return (cpu.Sum() - cpu[3] - cpu[4]) / 100.0;
    }

    public static double Seconds(int pid)
    {
        var path = $"/proc/{pid}/stat";
        if (!File.Exists(path))
        {
            return 0;
        }

        var stat = File.ReadAllText(path);
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (double.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + double.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture)) / 100;
    }
}
