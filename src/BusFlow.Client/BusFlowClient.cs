using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Client;

/// <summary>
/// Talks to a BusFlow edge: start, cancel, status, answer a suspension, and watch events over a
/// WebSocket that reconnects with back-off and resumes where it left off, never yielding an event
/// twice or skipping one.
/// </summary>
public sealed class BusFlowClient : IDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly HttpClient _http;
    private readonly BusFlowClientOptions _options;

    /// <summary>Creates a client for the edge the options name.</summary>
    public BusFlowClient(BusFlowClientOptions options)
    {
        _options = options;
        _http = new HttpClient { BaseAddress = options.BaseAddress, Timeout = TimeSpan.FromSeconds(100) };
        if (options.ApiKey is { } key)
        {
            _http.DefaultRequestHeaders.Add("X-Api-Key", key);
        }

        if (options.BearerToken is { } token)
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }

    /// <summary>Creates a client for an edge without auth (the embedded default).</summary>
    public BusFlowClient(Uri baseAddress)
        : this(new BusFlowClientOptions { BaseAddress = baseAddress })
    {
    }

    /// <summary>Starts a pipeline; with an idempotency key, repeating the call returns the same pipeline.</summary>
    public async Task<Guid> StartAsync(string definition, object? input = null, IReadOnlyDictionary<string, string>? tags = null, string? idempotencyKey = null, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/pipelines")
        {
            Content = new StringContent(JsonSerializer.Serialize(new { definition, input, tags }, Json), Encoding.UTF8, "application/json"),
        };
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }

        using var document = await SendAsync(request, cancellationToken);
        return document!.RootElement.GetProperty("pipelineId").GetGuid();
    }

    /// <summary>Asks the saga to cancel a running pipeline.</summary>
    public async Task CancelAsync(Guid pipelineId, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/pipelines/{pipelineId}/cancel");
        using var _ = await SendAsync(request, cancellationToken);
    }

    /// <summary>The pipeline's current status.</summary>
    public async Task<PipelineStatus> GetStatusAsync(Guid pipelineId, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"api/pipelines/{pipelineId}");
        using var document = await SendAsync(request, cancellationToken);
        var root = document!.RootElement.Clone();
        return new PipelineStatus(
            root.GetProperty("pipelineId").GetGuid(),
            root.GetProperty("definition").GetString()!,
            root.GetProperty("status").GetString()!,
            root.GetProperty("lastSeq").GetInt64(),
            root);
    }

    /// <summary>Answers a suspended step; repeating the same answer (same key) is harmless.</summary>
    public async Task AnswerAsync(Guid pipelineId, Guid suspendId, object? payload, string? idempotencyKey = null, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/pipelines/{pipelineId}/actions/{suspendId}")
        {
            Content = new StringContent(JsonSerializer.Serialize(payload, Json), Encoding.UTF8, "application/json"),
        };
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }

        using var _ = await SendAsync(request, cancellationToken);
    }

    /// <summary>
    /// One pipeline's events after <paramref name="afterSeq"/>, live, until its final event. Survives
    /// dropped connections and server restarts: it reconnects with back-off and resumes after the
    /// last seq it yielded.
    /// </summary>
    public IAsyncEnumerable<PipelineEvent> WatchAsync(Guid pipelineId, long afterSeq = 0, IReadOnlyCollection<string>? eventTypes = null, CancellationToken cancellationToken = default) =>
        WatchCoreAsync(pipelineId.ToString(), afterSeq, eventTypes, null, stopAtEnd: true, cancellationToken);

    /// <summary>
    /// Every pipeline's events the caller may see, in position order, after <paramref name="afterPosition"/>
    /// (null: from now on), filtered by type and tags; runs until cancelled, resuming by position.
    /// </summary>
    public IAsyncEnumerable<PipelineEvent> WatchAllAsync(long? afterPosition = null, IReadOnlyCollection<string>? eventTypes = null, IReadOnlyDictionary<string, string>? tags = null, CancellationToken cancellationToken = default) =>
        WatchCoreAsync("*", afterPosition, eventTypes, tags, stopAtEnd: false, cancellationToken);

    private async IAsyncEnumerable<PipelineEvent> WatchCoreAsync(
        string key,
        long? after,
        IReadOnlyCollection<string>? eventTypes,
        IReadOnlyDictionary<string, string>? tags,
        bool stopAtEnd,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var delay = _options.MinReconnectDelay;
        // Measured on the monotonic clock: a change of the wall clock neither ends nor extends the wait.
        var failingSince = (long?)null;
        while (true)
        {
            using var socket = new ClientWebSocket();
            Exception? lost = null;
            var connected = false;
            try
            {
                await ConnectAsync(socket, cancellationToken);
                var subscribe = JsonSerializer.SerializeToUtf8Bytes(new { type = "subscribe", pipelineId = key, after, eventTypes, tags, batch = true }, Json);
                await socket.SendAsync(subscribe, WebSocketMessageType.Text, true, cancellationToken);
                connected = true;
            }
            catch (Exception ex) when (ex is WebSocketException or HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
            {
                lost = ex;
            }

            while (connected)
            {
                Frame frame;
                try
                {
                    frame = await ReceiveAsync(socket, cancellationToken);
                }
                catch (Exception ex) when (ex is WebSocketException or IOException && !cancellationToken.IsCancellationRequested)
                {
                    lost = ex;
                    break;
                }

                if (frame.Closed)
                {
                    lost = new WebSocketException($"closed by the server: {socket.CloseStatus} {socket.CloseStatusDescription}");
                    break;
                }

                if (frame.Error is { } error)
                {
                    throw error;
                }

                if (frame.Subscribed)
                {
                    delay = _options.MinReconnectDelay;
                    failingSince = null;
                    continue;
                }

                foreach (var e in frame.Events ?? [])
                {
                    var order = key == "*" ? e.Position : e.Seq;
                    if (after is { } last && order <= last)
                    {
                        continue;
                    }

                    after = order;
                    yield return e;
                    if (stopAtEnd && e is PipelineCompleted or PipelineFailed or PipelineCancelled)
                    {
                        await CloseQuietlyAsync(socket);
                        yield break;
                    }
                }
            }

            failingSince ??= Stopwatch.GetTimestamp();
            if (_options.ReconnectTimeout != Timeout.InfiniteTimeSpan && Stopwatch.GetElapsedTime(failingSince.Value) > _options.ReconnectTimeout)
            {
                throw new WebSocketException($"could not reconnect to {_options.BaseAddress} within {_options.ReconnectTimeout}", lost);
            }

            await Task.Delay(delay + TimeSpan.FromMilliseconds(Random.Shared.Next(0, 100)), cancellationToken);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxReconnectDelay.Ticks));
        }
    }

    private async Task ConnectAsync(ClientWebSocket socket, CancellationToken cancellationToken)
    {
        var builder = new UriBuilder(new Uri(_options.BaseAddress, "ws"))
        {
            Scheme = _options.BaseAddress.Scheme == Uri.UriSchemeHttps ? "wss" : "ws",
        };
        if (_options.ApiKey is { } key)
        {
            socket.Options.SetRequestHeader("X-Api-Key", key);
        }

        if (_options.BearerToken is { } token)
        {
            socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        }

        await socket.ConnectAsync(builder.Uri, cancellationToken);
    }

    /// <summary>One frame: events (one, or several in an <c>events</c> frame), a reply, or the close.</summary>
    private readonly record struct Frame(IReadOnlyList<PipelineEvent>? Events, bool Subscribed, bool Closed, BusFlowApiException? Error);

    private static async Task<Frame> ReceiveAsync(ClientWebSocket socket, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        while (true)
        {
            var result = await socket.ReceiveAsync(chunk, cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return new Frame(null, false, true, null);
            }

            buffer.Write(chunk, 0, result.Count);
            if (result.EndOfMessage)
            {
                break;
            }
        }

        using var document = JsonDocument.Parse(buffer.ToArray());
        var root = document.RootElement;
        switch (root.GetProperty("type").GetString())
        {
            case "subscribed":
                return new Frame(null, true, false, null);
            case "error":
                return new Frame(null, false, false, new BusFlowApiException(null, root.GetProperty("code").GetString()!, root.GetProperty("message").GetString()!));
            case "pong" or "unsubscribed":
                return default;
            case "events":
                return new Frame([.. root.GetProperty("events").EnumerateArray().Select(e => e.Deserialize<PipelineEvent>(Json)!)], false, false, null);
            default:
                return new Frame([root.Deserialize<PipelineEvent>(Json)!], false, false, null);
        }
    }

    private static async Task CloseQuietlyAsync(ClientWebSocket socket)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
        }
    }

    private async Task<JsonDocument?> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        using var response = await _http.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.IsSuccessStatusCode)
        {
            return body.Length == 0 ? null : JsonDocument.Parse(body);
        }

        string code = "http_" + (int)response.StatusCode, message = $"{(int)response.StatusCode} {response.ReasonPhrase}";
        if (response.Content.Headers.ContentType?.MediaType == "application/problem+json")
        {
            using var problem = JsonDocument.Parse(body);
            code = problem.RootElement.TryGetProperty("code", out var c) ? c.GetString() ?? code : code;
            var title = problem.RootElement.TryGetProperty("title", out var t) ? t.GetString() : null;
            var detail = problem.RootElement.TryGetProperty("detail", out var d) ? d.GetString() : null;
            message = string.Join(": ", new[] { title, detail }.Where(s => !string.IsNullOrEmpty(s)));
        }

        throw new BusFlowApiException(response.StatusCode, code, message);
    }

    /// <inheritdoc />
    public void Dispose() => _http.Dispose();
}
