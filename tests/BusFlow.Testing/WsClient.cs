using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace BusFlow.Testing;

/// <summary>A real ClientWebSocket speaking the edge's JSON protocol.</summary>
public sealed class WsClient : IAsyncDisposable
{
    private readonly ClientWebSocket _socket;

    private WsClient(ClientWebSocket socket) => _socket = socket;

    public WebSocketState State => _socket.State;

    public WebSocketCloseStatus? CloseStatus => _socket.CloseStatus;

    public static async Task<WsClient> ConnectAsync(Uri uri, Action<ClientWebSocketOptions>? configure = null)
    {
        var socket = new ClientWebSocket();
        configure?.Invoke(socket.Options);
        await socket.ConnectAsync(uri, CancellationToken.None);
        return new WsClient(socket);
    }

    public Task SendAsync(object message) => SendTextAsync(JsonSerializer.Serialize(message, JsonSerializerOptions.Web));

    public Task SendTextAsync(string text) =>
        _socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    /// <summary>Sends bytes as a text frame, whatever they hold.</summary>
    public Task SendTextBytesAsync(byte[] bytes) => _socket.SendAsync(bytes, WebSocketMessageType.Text, true, CancellationToken.None);

    public Task SendBinaryAsync(byte[] bytes) => _socket.SendAsync(bytes, WebSocketMessageType.Binary, true, CancellationToken.None);

    /// <summary>The next message, or null when the server closed the socket.</summary>
    public async Task<JsonElement?> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        while (true)
        {
            var result = await _socket.ReceiveAsync(chunk, cts.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return null;
            }

            buffer.Write(chunk, 0, result.Count);
            if (result.EndOfMessage)
            {
                using var document = JsonDocument.Parse(buffer.ToArray());
                return document.RootElement.Clone();
            }
        }
    }

    /// <summary>Receives until <paramref name="done"/> holds for a message; returns every message received.</summary>
    public async Task<List<JsonElement>> ReceiveUntilAsync(Func<JsonElement, bool> done, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        var received = new List<JsonElement>();
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"condition not met; received {received.Count}: {string.Join(" | ", received.TakeLast(5))}");
            }

            var message = await ReceiveAsync(left) ?? throw new InvalidOperationException($"socket closed ({_socket.CloseStatus} {_socket.CloseStatusDescription}) after {received.Count} messages");

            // The events of an "events" frame count one by one.
            foreach (var item in message.Type() == "events" ? message.Events() : [message])
            {
                received.Add(item);
                if (done(item))
                {
                    return received;
                }
            }
        }
    }

    /// <summary>Subscribes and waits for <c>subscribed</c>.</summary>
    public async Task SubscribeAsync(string pipelineId, long? after = null, string[]? eventTypes = null, Dictionary<string, string>? tags = null, bool? batch = null)
    {
        await SendAsync(new { type = "subscribe", pipelineId, after, eventTypes, tags, batch });
        var reply = await ReceiveAsync();
        if (reply?.GetProperty("type").GetString() != "subscribed")
        {
            throw new InvalidOperationException($"expected subscribed, got {reply}");
        }
    }

    public async Task CloseAsync()
    {
        if (_socket.State == WebSocketState.Open)
        {
            await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            if (_socket.State == WebSocketState.Open)
            {
                await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", cts.Token);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
        }

        _socket.Dispose();
    }
}

/// <summary>Reading event frames.</summary>
public static class EventFrames
{
    public static string Type(this JsonElement e) => e.GetProperty("type").GetString()!;

    public static long Seq(this JsonElement e) => e.GetProperty("seq").GetInt64();

    public static long Position(this JsonElement e) => e.GetProperty("position").GetInt64();

    public static Guid PipelineId(this JsonElement e) => e.GetProperty("pipelineId").GetGuid();

    public static bool IsTerminal(this JsonElement e) => e.Type() is "PipelineCompleted" or "PipelineFailed" or "PipelineCancelled";

    public static bool IsEvent(this JsonElement e) => e.TryGetProperty("seq", out _);

    /// <summary>The events a frame carries: one, the elements of an <c>events</c> frame, or none.</summary>
    public static IEnumerable<JsonElement> Events(this JsonElement frame) =>
        frame.Type() == "events" ? frame.GetProperty("events").EnumerateArray() : frame.IsEvent() ? [frame] : [];
}
