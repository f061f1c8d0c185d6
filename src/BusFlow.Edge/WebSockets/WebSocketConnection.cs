using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;
using BusFlow.Edge.Auth;
using BusFlow.Edge.Live;
using Microsoft.Extensions.Logging;

namespace BusFlow.Edge.WebSockets;

/// <summary>
/// One client on <c>/ws</c>: reads its JSON messages (subscribe, unsubscribe, ping) with limits on
/// frame size and rate, answers bad input with error frames and keeps the socket open, and writes
/// events and replies from the outbound buffer.
/// </summary>
internal sealed partial class WebSocketConnection(
    WebSocket socket,
    BusFlowPrincipal principal,
    SubscriptionHub hub,
    IPipelineQueries pipelines,
    IPipelineEventLog reader,
    EdgeMetrics metrics,
    ILogger logger) : EdgeConnection(principal, hub.Options.OutboundBuffer, metrics)
{
    private static readonly byte[] Pong = """{"type":"pong"}"""u8.ToArray();

    private readonly Dictionary<string, Subscription> _subscriptions = new(StringComparer.Ordinal);
    private CancellationTokenSource Abort { get; } = new();

    /// <summary>Cancelled once the connection has ended, so nothing waits to abort it any more.</summary>
    private CancellationTokenSource Finished { get; } = new();
    private readonly EdgeOptions _options = hub.Options;
    private double _tokens = hub.Options.MaxMessagesPerSecond;
    private long _lastRefill = Environment.TickCount64;

    public async Task RunAsync()
    {
        var writer = WriteLoopAsync();
        try
        {
            await ReceiveLoopAsync();
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or Microsoft.AspNetCore.Connections.ConnectionAbortedException)
        {
            // The client went away.
        }
        finally
        {
            RequestClose(CloseCodes.Normal, "", drain: false);
            foreach (var subscription in _subscriptions.Values)
            {
                hub.Remove(subscription);
            }

            _subscriptions.Clear();
        }

        await writer;
        await Finished.CancelAsync();
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            await RunWriterAsync(Abort.Token);
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Abort.Token);
                timeout.CancelAfter(TimeSpan.FromSeconds(5));
                await socket.CloseOutputAsync((WebSocketCloseStatus)CloseCode, CloseReason, timeout.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException or ObjectDisposedException)
        {
            socket.Abort();
        }
        finally
        {
            // Ends the receive loop if the client never answers the close.
            Abort.CancelAfter(TimeSpan.FromSeconds(5));
        }
    }

    protected override void OnCloseRequested() => _ = AbortIfStuckAsync();

    /// <summary>
    /// A connection asked to close gets time to get its close frame out (a stalled client that reads
    /// again within twice the stall timeout still learns to resume); then it is cut.
    /// </summary>
    private async Task AbortIfStuckAsync()
    {
        var stalledGrace = _options.StallTimeout * 2 > TimeSpan.FromSeconds(5) ? _options.StallTimeout * 2 : TimeSpan.FromSeconds(5);
        try
        {
            await Task.Delay(DrainOnClose ? _options.DrainTimeout + TimeSpan.FromSeconds(1) : stalledGrace, Finished.Token);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        if (socket.State != WebSocketState.Closed)
        {
            await Abort.CancelAsync();
            socket.Abort();
        }
    }

    /// <summary>
    /// Reads client messages. An idle connection holds no buffer: it waits with a zero-byte read (as
    /// SignalR's transport does), then borrows a small buffer from the shared pool for the message,
    /// and a larger one (up to <see cref="EdgeOptions.MaxFrameBytes"/>) for a larger message, until
    /// it is handled.
    /// </summary>
    private async Task ReceiveLoopAsync()
    {
        var max = _options.MaxFrameBytes;
        byte[]? small = null;
        var buffer = Array.Empty<byte>();
        var count = 0;
        try
        {
            while (socket.State == WebSocketState.Open && !CloseRequested)
            {
                if (count == 0 && small is null)
                {
                    var waited = await socket.ReceiveAsync(Memory<byte>.Empty, Abort.Token);
                    if (waited.MessageType == WebSocketMessageType.Close)
                    {
                        RequestClose(CloseCodes.Normal, "", drain: false);
                        return;
                    }

                    if (waited.EndOfMessage)
                    {
                        // An empty message, taken whole by the wait.
                        await HandleMessageAsync(waited.MessageType, ReadOnlyMemory<byte>.Empty);
                        continue;
                    }

                    small = ArrayPool<byte>.Shared.Rent(Math.Min(512, max));
                    buffer = small;
                }

                var limit = Math.Min(buffer.Length, max);
                if (count == limit && limit < max)
                {
                    var larger = ArrayPool<byte>.Shared.Rent(Math.Min(max, limit * 8));
                    buffer.AsSpan(0, count).CopyTo(larger);
                    if (!ReferenceEquals(buffer, small))
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }

                    buffer = larger;
                    limit = Math.Min(buffer.Length, max);
                }

                var result = await socket.ReceiveAsync(buffer.AsMemory(count, limit - count), Abort.Token);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    RequestClose(CloseCodes.Normal, "", drain: false);
                    return;
                }

                count += result.Count;
                if (!result.EndOfMessage)
                {
                    if (count < max)
                    {
                        continue;
                    }

                    // Too large: read the rest of the frame away, say so, carry on.
                    do
                    {
                        result = await socket.ReceiveAsync(buffer.AsMemory(0, limit), Abort.Token);
                    }
                    while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                    count = 0;
                    (buffer, small) = ReleaseAll(buffer, small);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        RequestClose(CloseCodes.Normal, "", drain: false);
                        return;
                    }

                    await ErrorAsync(ClientErrors.FrameTooLarge, $"frames are limited to {max} bytes");
                    continue;
                }

                var length = count;
                count = 0;
                await HandleMessageAsync(result.MessageType, buffer.AsMemory(0, length));
                (buffer, small) = ReleaseAll(buffer, small);
            }
        }
        finally
        {
            ReleaseAll(buffer, small);
        }
    }

    private async Task HandleMessageAsync(WebSocketMessageType type, ReadOnlyMemory<byte> message)
    {
        if (!TakeToken())
        {
            await ErrorAsync(ClientErrors.RateLimited, $"more than {_options.MaxMessagesPerSecond} messages per second; message ignored");
        }
        else if (type == WebSocketMessageType.Binary)
        {
            await ErrorAsync(ClientErrors.BinaryNotSupported, "send JSON text frames");
        }
        else
        {
            await HandleAsync(message);
        }
    }

    /// <summary>Gives the message's buffers back to the pool; the connection waits without one again.</summary>
    private static (byte[] Buffer, byte[]? Small) ReleaseAll(byte[] buffer, byte[]? small)
    {
        if (small is not null)
        {
            ArrayPool<byte>.Shared.Return(small);
        }

        if (buffer.Length > 0 && !ReferenceEquals(buffer, small))
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return ([], null);
    }

    private bool TakeToken()
    {
        var now = Environment.TickCount64;
        var rate = _options.MaxMessagesPerSecond;
        _tokens = Math.Min(rate, _tokens + ((now - _lastRefill) * rate / 1000.0));
        _lastRefill = now;
        if (_tokens < 1)
        {
            return false;
        }

        _tokens -= 1;
        return true;
    }

    private async Task HandleAsync(ReadOnlyMemory<byte> frame)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(frame);
        }
        catch (JsonException ex)
        {
            await ErrorAsync(ClientErrors.InvalidJson, $"not JSON: {ex.Message}");
            return;
        }

        using (document)
        {
            var message = document.RootElement;
            if (JsonStrings.FindInvalid(message) is { } path)
            {
                await ErrorAsync(ClientErrors.InvalidString, $"the string at {SubscribeRequest.Truncate(path)} is not valid Unicode (a lone surrogate escape)");
                return;
            }

            if (message.ValueKind != JsonValueKind.Object)
            {
                await ErrorAsync(ClientErrors.InvalidMessage, "a message is a JSON object with a \"type\"");
                return;
            }

            if (!message.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            {
                await ErrorAsync(ClientErrors.InvalidMessage, "\"type\" is required: subscribe, unsubscribe or ping");
                return;
            }

            switch (type.GetString())
            {
                case "subscribe":
                    await SubscribeAsync(message);
                    break;
                case "unsubscribe":
                    await UnsubscribeAsync(message);
                    break;
                case "ping":
                    await SendAsync(Pong);
                    break;
                default:
                    await ErrorAsync(ClientErrors.UnknownType, $"unknown message type '{SubscribeRequest.Truncate(type.GetString()!)}'; expected subscribe, unsubscribe or ping");
                    break;
            }
        }
    }

    private async Task SubscribeAsync(JsonElement message)
    {
        var (request, code, error) = SubscribeRequest.Parse(message);
        if (request is null)
        {
            await ErrorAsync(code!, error!);
            return;
        }

        var replacing = _subscriptions.TryGetValue(request.Key, out var existing);
        if (!replacing && _subscriptions.Count >= _options.MaxSubscriptionsPerConnection)
        {
            await ErrorAsync(ClientErrors.TooManySubscriptions, $"a connection may hold {_options.MaxSubscriptionsPerConnection} subscriptions", request.Key);
            return;
        }

        long? last;
        try
        {
            last = request.After is null ? null : await LastOrderAsync(request);
        }
        // (a store's retry giving up, EF Core's RetryLimitExceededException among them, carries the last
        // database failure inside)
        catch (Exception ex) when ((ex is System.Data.Common.DbException or TimeoutException || ex.InnerException is System.Data.Common.DbException or TimeoutException) && !Closing.IsCancellationRequested)
        {
            // The database is down or restarting: this subscribe fails, the connection and its other
            // subscriptions stay, and the client subscribes again (a live subscription resumes by itself).
            LogStoreUnavailable(logger, ex, request.Key);
            await ErrorAsync(ClientErrors.StoreUnavailable, "the store could not be read to check `after`; subscribe again shortly", request.Key);
            return;
        }

        if (request.After is { } after && after > last)
        {
            await ErrorAsync(ClientErrors.AfterOutOfRange, $"after {after} is beyond the last {(request.PipelineId is null ? "position" : "seq")} recorded", request.Key);
            return;
        }

        if (existing is not null)
        {
            hub.Remove(existing);
        }

        var filter = new PipelineEventFilter { EventTypes = request.EventTypes, Tags = request.Tags };
        var subscription = new Subscription(request.Key, request.PipelineId, filter, this, request.After) { Batch = request.Batch };
        _subscriptions[request.Key] = subscription;
        await SendAsync(request.Batch
            ? JsonSerializer.SerializeToUtf8Bytes(new { type = "subscribed", pipelineId = request.Key, batch = true }, PipelineEventJson.Options)
            : JsonSerializer.SerializeToUtf8Bytes(new { type = "subscribed", pipelineId = request.Key }, PipelineEventJson.Options));
        hub.Add(subscription);
    }

    /// <summary>The last seq of a pipeline this principal may see (0 for one it may not), or the last position.</summary>
    private async Task<long> LastOrderAsync(SubscribeRequest request)
    {
        if (request.PipelineId is not { } id)
        {
            return await reader.LastPositionAsync(Closing.Token);
        }

        var state = await pipelines.FindAsync(id, Closing.Token);
        return state is not null && Principal.Sees(state.Tags) ? state.LastSeq : 0;
    }

    private async Task UnsubscribeAsync(JsonElement message)
    {
        if (!SubscribeRequest.TryParseKey(message, out var key, out _, out var code, out var error))
        {
            await ErrorAsync(code!, error!);
            return;
        }

        if (!_subscriptions.Remove(key, out var subscription))
        {
            await ErrorAsync(ClientErrors.NotSubscribed, $"no subscription for '{key}' on this connection", key);
            return;
        }

        hub.Remove(subscription);
        await SendAsync(JsonSerializer.SerializeToUtf8Bytes(new { type = "unsubscribed", pipelineId = key }, PipelineEventJson.Options));
    }

    private Task ErrorAsync(string code, string message, string? pipelineId = null)
    {
        Metrics.ClientError();
        LogClientError(logger, code, message);
        return SendAsync(JsonSerializer.SerializeToUtf8Bytes(new { type = "error", code, message, pipelineId }, ErrorJson));
    }

    private static readonly JsonSerializerOptions ErrorJson = new(PipelineEventJson.Options) { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    private async Task SendAsync(byte[] json)
    {
        try
        {
            await EnqueueAsync(new Outbound(null, json), Closing.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or System.Threading.Channels.ChannelClosedException)
        {
            // Closing: the reply has nowhere to go.
        }
    }

    // Sends take no token: with one, ManagedWebSocket takes its slow path for every frame (an async
    // state machine and a token registration per send), which cost replay about a tenth of its rate.
    // A send stuck on a client that stopped reading is ended once the connection closes (stalled past
    // StallTimeout, or shutdown): AbortIfStuckAsync aborts the socket, which fails the pending send.
    protected override ValueTask WriteEventAsync(EdgeEvent e, CancellationToken cancellationToken) =>
        socket.SendAsync(e.Json, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);

    /// <summary>The connection under the socket when it can gather writes (an HTTP/1.1 upgrade); else null.</summary>
    public CorkedStream? Corked { get; init; }

    /// <summary>A run of replayed events, a frame each, reaching the connection in one write where it can.</summary>
    protected override async ValueTask WriteEachAsync(ArraySegment<WireEvent> events, CancellationToken cancellationToken)
    {
        Corked?.Hold();
        try
        {
            foreach (var e in events)
            {
                await socket.SendAsync(e.Json, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
            }
        }
        catch when (Corked is not null)
        {
            // The send's failure is the one to report; the release only gives the buffer back.
            try
            {
                await Corked.ReleaseAsync(CancellationToken.None);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or Microsoft.AspNetCore.Connections.ConnectionAbortedException)
            {
            }

            throw;
        }

        if (Corked is { } corked)
        {
            await corked.ReleaseAsync(CancellationToken.None);
        }
    }

    private static readonly byte[] EventsStart = """{"type":"events","events":["""u8.ToArray();
    private static readonly byte[] EventsEnd = "]}"u8.ToArray();

    /// <summary>
    /// Events of subscriptions with <c>batch</c> go out as one <c>{"type":"events","events":[...]}</c>
    /// frame, each element the event's own JSON as a single frame would carry it.
    /// </summary>
    protected override async ValueTask WriteEventsAsync(ArraySegment<WireEvent> events, CancellationToken cancellationToken)
    {
        var length = EventsStart.Length + EventsEnd.Length + events.Count - 1;
        foreach (var e in events)
        {
            length += e.Json.Length;
        }

        var frame = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            EventsStart.CopyTo(frame, 0);
            var at = EventsStart.Length;
            for (var i = 0; i < events.Count; i++)
            {
                if (i > 0)
                {
                    frame[at++] = (byte)',';
                }

                events[i].Json.Span.CopyTo(frame.AsSpan(at));
                at += events[i].Json.Length;
            }

            EventsEnd.CopyTo(frame, at);
            await socket.SendAsync(frame.AsMemory(0, length), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(frame);
        }
    }

    protected override ValueTask WriteControlAsync(byte[] json, CancellationToken cancellationToken) =>
        socket.SendAsync(json.AsMemory(), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A subscribe to {Key} could not read the store; the client was told to subscribe again")]
    private static partial void LogStoreUnavailable(ILogger logger, Exception exception, string key);

    [LoggerMessage(Level = LogLevel.Debug, Message = "WebSocket client error {Code}: {Message}")]
    private static partial void LogClientError(ILogger logger, string code, string message);
}
