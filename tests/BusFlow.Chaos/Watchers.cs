using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace BusFlow.Chaos;

/// <summary>An event as a subscriber received it: the fields the checks compare.</summary>
public sealed record Received(Guid PipelineId, long Seq, long Position, string Type);

/// <summary>
/// What one subscriber received, every event as it came (repeats and all: the check, not the
/// subscriber, decides what is a duplicate), and how often it connected again.
/// </summary>
public sealed class Subscriber(string name, string transport)
{
    private readonly List<Received> _received = [];

    public string Name { get; } = name;

    public string Transport { get; } = transport;

    public int Reconnects { get; set; }

    public bool Ended { get; set; }

    public string? Failure { get; set; }

    public IReadOnlyList<Received> Events
    {
        get
        {
            lock (_received)
            {
                return [.. _received];
            }
        }
    }

    /// <summary>How many events it received, without copying them.</summary>
    public int Count
    {
        get
        {
            lock (_received)
            {
                return _received.Count;
            }
        }
    }

    public long Last(bool byPosition)
    {
        lock (_received)
        {
            return _received.Count == 0 ? 0 : byPosition ? _received[^1].Position : _received[^1].Seq;
        }
    }

    public void Add(JsonElement e)
    {
        var received = new Received(
            e.GetProperty("pipelineId").GetGuid(),
            e.GetProperty("seq").GetInt64(),
            e.TryGetProperty("position", out var p) && p.ValueKind == JsonValueKind.Number ? p.GetInt64() : 0,
            e.GetProperty("type").GetString()!);
        lock (_received)
        {
            _received.Add(received);
        }
    }

    public static bool IsTerminal(string type) => type is "PipelineCompleted" or "PipelineFailed" or "PipelineCancelled";
}

/// <summary>
/// Subscribers over each transport of the edge that reconnect to a serving edge and resume after
/// what they last received (by seq for one pipeline, by position for <c>*</c>), as a client is told
/// to in docs/protocol.md. A silent connection (a paused edge) counts as lost after
/// <see cref="Silence"/>; some subscribers drop their connection on purpose, or stop reading a while.
/// </summary>
public sealed class Watchers(Func<RoleProcess> edge, Random random)
{
    private static readonly TimeSpan Silence = TimeSpan.FromSeconds(20);

    public Random Random { get; } = random;

    /// <summary>One pipeline's events until its final one, over <paramref name="subscriber"/>'s transport; <paramref name="onEvent"/> sees each as it comes.</summary>
    public async Task WatchPipelineAsync(Subscriber subscriber, Guid pipelineId, Func<JsonElement, Task> onEvent, CancellationToken cancellationToken)
    {
        var dropAfter = Pick(0.3) ? Next(1, 6) : int.MaxValue;
        var stallAt = Pick(0.1) ? Next(1, 4) : int.MaxValue;
        var got = 0;
        var failures = 0;
        while (!subscriber.Ended && !cancellationToken.IsCancellationRequested)
        {
            var node = edge();
            var before = got;
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                async Task<bool> Take(JsonElement e)
                {
                    subscriber.Add(e);
                    await onEvent(e);
                    got++;
                    if (got == stallAt)
                    {
                        // A subscriber that stops reading for a while, then goes on.
                        await Task.Delay(TimeSpan.FromSeconds(3), cancellationToken);
                    }

                    if (Subscriber.IsTerminal(e.GetProperty("type").GetString()!))
                    {
                        subscriber.Ended = true;
                        return false;
                    }

                    // Some subscribers drop their connection on purpose once, and resume.
                    if (got == dropAfter)
                    {
                        dropAfter = int.MaxValue;
                        return false;
                    }

                    return true;
                }

                var after = subscriber.Last(byPosition: false);
                var finished = subscriber.Transport switch
                {
                    "websocket" => await WebSocketAsync(node, $$"""{"type":"subscribe","pipelineId":"{{pipelineId}}","after":{{after}},"batch":true}""", Take, attempt.Token),
                    "sse" => await ServerSentEventsAsync(node, pipelineId, after, Take, attempt.Token),
                    _ => await LongPollAsync(node, pipelineId, after, Take, attempt.Token),
                };
                if (finished)
                {
                    subscriber.Ended = true;
                }
            }
            catch (Exception ex) when (ex is WebSocketException or HttpRequestException or IOException or System.Net.Sockets.SocketException or OperationCanceledException or TimeoutException)
            {
                // Cut off by the run's end: the subscriber stays unended, which the checks report.
                if (cancellationToken.IsCancellationRequested)
                {
                    return;
                }
            }

            if (!subscriber.Ended)
            {
                subscriber.Reconnects++;
                failures = got > before ? 0 : failures + 1;
                await Task.Delay(Backoff(failures), cancellationToken);
            }
        }
    }

    /// <summary>Every pipeline's events with <paramref name="filter"/> (JSON members of the subscribe message), resuming by position, until cancelled.</summary>
    public async Task WatchAllAsync(Subscriber subscriber, string filter, TimeSpan dropEvery, CancellationToken cancellationToken)
    {
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var node = edge();
            var before = subscriber.Count;
            try
            {
                using var drop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                drop.CancelAfter(dropEvery + TimeSpan.FromMilliseconds(Next(0, 5000)));
                Task<bool> Take(JsonElement e)
                {
                    subscriber.Add(e);
                    return Task.FromResult(true);
                }

                await WebSocketAsync(node, $$"""{"type":"subscribe","pipelineId":"*","after":{{subscriber.Last(byPosition: true)}},"batch":true,{{filter}}}""", Take, drop.Token);
            }
            catch (Exception ex) when (ex is InvalidOperationException or JsonException)
            {
                subscriber.Failure = ex.Message;
                return;
            }
            catch (Exception ex) when (ex is WebSocketException or HttpRequestException or IOException or System.Net.Sockets.SocketException or OperationCanceledException or TimeoutException)
            {
            }

            if (!cancellationToken.IsCancellationRequested)
            {
                subscriber.Reconnects++;
                failures = subscriber.Count > before ? 0 : failures + 1;
                await Task.Delay(Backoff(failures), CancellationToken.None);
            }
        }
    }

    /// <summary>
    /// The pause before reconnecting, as a client should (BusFlow.Client does): 100-600 ms after a
    /// connection that brought events, then doubling with jitter per attempt that brought none, up to
    /// 5 s. Without it a thousand subscribers of a struggling edge keep it struggling.
    /// </summary>
    private TimeSpan Backoff(int failures)
    {
        var cap = (int)Math.Min(5000, 600 * Math.Pow(2, Math.Min(failures, 6)));
        return TimeSpan.FromMilliseconds(Next(cap / 6, cap));
    }

    /// <summary>Reads frames until <paramref name="take"/> says stop (true when the stream ended by itself).</summary>
    private static async Task<bool> WebSocketAsync(RoleProcess node, string subscribe, Func<JsonElement, Task<bool>> take, CancellationToken cancellationToken)
    {
        using var socket = new ClientWebSocket();
        using var connect = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        connect.CancelAfter(TimeSpan.FromSeconds(5));
        await socket.ConnectAsync(new Uri($"ws://{node.BaseUri.Authority}/ws"), connect.Token);
        await socket.SendAsync(Encoding.UTF8.GetBytes(subscribe), WebSocketMessageType.Text, true, cancellationToken);
        var buffer = new byte[1 << 20];
        while (true)
        {
            var length = 0;
            ValueWebSocketReceiveResult result;
            do
            {
                using var silence = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                silence.CancelAfter(Silence);
                result = await socket.ReceiveAsync(buffer.AsMemory(length), silence.Token);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return false;
                }

                length += result.Count;
            }
            while (!result.EndOfMessage);
            using var frame = JsonDocument.Parse(buffer.AsMemory(0, length));
            var type = frame.RootElement.GetProperty("type").GetString();
            IEnumerable<JsonElement> events = type switch
            {
                "events" => frame.RootElement.GetProperty("events").EnumerateArray(),
                "subscribed" or "heartbeat" or "unsubscribed" => [],
                // The database is restarting: subscribe again, as docs/protocol.md tells a client to.
                "error" when frame.RootElement.GetProperty("code").GetString() == "store_unavailable" => throw new WebSocketException("store_unavailable"),
                "error" => throw new InvalidOperationException("error frame: " + frame.RootElement.GetRawText()),
                _ => [frame.RootElement],
            };
            foreach (var e in events)
            {
                if (!await take(e))
                {
                    await CloseQuietly(socket);
                    return false;
                }
            }
        }
    }

    private static async Task<bool> ServerSentEventsAsync(RoleProcess node, Guid pipelineId, long after, Func<JsonElement, Task<bool>> take, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = node.BaseUri, Timeout = Timeout.InfiniteTimeSpan };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/pipelines/{pipelineId}/stream");
        request.Headers.Add("Last-Event-ID", after.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (response.StatusCode == System.Net.HttpStatusCode.NoContent)
        {
            // Finished and fully seen: only right when this subscriber has the final event.
            return true;
        }

        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (true)
        {
            using var silence = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            silence.CancelAfter(Silence);
            var line = await reader.ReadLineAsync(silence.Token);
            if (line is null)
            {
                return false;
            }

            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                using var e = JsonDocument.Parse(line[6..]);
                if (!await take(e.RootElement))
                {
                    return false;
                }
            }
        }
    }

    private static async Task<bool> LongPollAsync(RoleProcess node, Guid pipelineId, long after, Func<JsonElement, Task<bool>> take, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = node.BaseUri, Timeout = TimeSpan.FromSeconds(15) };
        while (true)
        {
            using var page = JsonDocument.Parse(await http.GetStringAsync($"/api/pipelines/{pipelineId}/events?after={after}&waitMs=5000&limit=100", cancellationToken));
            foreach (var e in page.RootElement.GetProperty("events").EnumerateArray())
            {
                if (!await take(e))
                {
                    return false;
                }
            }

            after = page.RootElement.GetProperty("next").GetInt64();
        }
    }

    private static async Task CloseQuietly(ClientWebSocket socket)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or System.Net.Sockets.SocketException)
        {
        }
    }

    private bool Pick(double chance)
    {
        lock (Random)
        {
            return Random.NextDouble() < chance;
        }
    }

    private int Next(int min, int max)
    {
        lock (Random)
        {
            return Random.Next(min, max);
        }
    }
}
