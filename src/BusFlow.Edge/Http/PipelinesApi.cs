using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Edge.Auth;
using BusFlow.Edge.Live;
using BusFlow.Edge.WebSockets;
using BusFlow.Store;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace BusFlow.Edge.Http;

/// <summary>The REST API of design.md's wire contract (docs/protocol.md).</summary>
internal static partial class PipelinesApi
{
    private const int MaxBodyBytes = 1024 * 1024;
    private const int MaxIdempotencyKeyLength = 128;

    public static void Map(IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api");
        api.MapGet("/definitions", (PipelineRegistry registry) =>
            Results.Ok(registry.Definitions.OrderBy(d => d.Name, StringComparer.Ordinal).Select(d => DefinitionView.From(d, registry))));
        api.MapGet("/definitions/versions", VersionsAsync);
        api.MapGet("/definitions/{name}/versions/{version}", (string name, string version, PipelineRegistry registry) =>
            registry.Find(name, version) is { } definition && version.Length > 0
                ? Results.Ok(DefinitionView.From(definition, registry))
                : Problems.Of(StatusCodes.Status404NotFound, "definition_version_not_found", "Definition version not found", $"This process has no definition '{Problems.Truncate(name)}' in the version '{Problems.Truncate(version)}'."));
        api.MapPost("/pipelines", StartAsync);
        api.MapGet("/pipelines", ListAsync);
        api.MapGet("/pipelines/{id}", StatusAsync);
        api.MapPost("/pipelines/{id}/cancel", CancelAsync);
        api.MapGet("/pipelines/{id}/events", EventsAsync);
        api.MapGet("/pipelines/{id}/stream", StreamAsync);
        api.MapPost("/pipelines/{id}/actions/{suspendId}", ActionAsync);
        api.MapGet("/metrics", (EdgeMetrics metrics) => Results.Ok(metrics.Snapshot()));
    }

    private static async Task<IResult> StartAsync(
        HttpContext http,
        PipelineRegistry registry,
        PipelineStore store,
        PipelineSignals signals,
        IPublishEndpoint publish,
        IOptions<EdgeOptions> options)
    {
        var principal = http.Principal();
        var (body, problem) = await ReadJsonAsync(http.Request);
        if (problem is not null)
        {
            return problem;
        }

        if (body.ValueKind != JsonValueKind.Object)
        {
            return Problems.Invalid("invalid_body", "The body is a JSON object: {\"definition\":\"demo\",\"input\":{...},\"tags\":{\"k\":\"v\"}}.");
        }

        if (!body.TryGetProperty("definition", out var nameElement) || nameElement.ValueKind != JsonValueKind.String)
        {
            return Problems.Invalid("invalid_body", "\"definition\" is required: the name of a registered pipeline definition.");
        }

        var name = nameElement.GetString()!;
        var definition = registry.Find(name);
        if (definition is null)
        {
            return Problems.Of(
                StatusCodes.Status422UnprocessableEntity,
                "unknown_definition",
                "Unknown pipeline definition",
                $"No pipeline definition is named '{Problems.Truncate(name)}'. Known: {string.Join(", ", registry.Definitions.Select(d => d.Name).Order(StringComparer.Ordinal))}.");
        }

        JsonElement? input = body.TryGetProperty("input", out var inputElement) && inputElement.ValueKind != JsonValueKind.Null ? inputElement.Clone() : null;
        if (definition.Input?.Validate(input) is { Count: > 0 } inputErrors)
        {
            return Results.Problem(
                statusCode: StatusCodes.Status422UnprocessableEntity,
                title: "Invalid input",
                detail: $"The input does not fit the '{name}' pipeline: {string.Join("; ", inputErrors)}.",
                type: "https://busflow.dev/problems/invalid_input",
                extensions: new Dictionary<string, object?> { ["code"] = "invalid_input", ["errors"] = inputErrors });
        }
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        if (body.TryGetProperty("tags", out var tagElement) && tagElement.ValueKind != JsonValueKind.Null)
        {
            if (tagElement.ValueKind != JsonValueKind.Object)
            {
                return Problems.Invalid("invalid_tags", "\"tags\" is an object of string values.");
            }

            foreach (var tag in tagElement.EnumerateObject())
            {
                if (tag.Value.ValueKind != JsonValueKind.String)
                {
                    return Problems.Invalid("invalid_tags", $"Tag '{Problems.Truncate(tag.Name)}' must be a string.");
                }

                tags[tag.Name] = tag.Value.GetString()!;
            }
        }

        if (StartLimits.Check(input, tags, options.Value) is { } tooLarge)
        {
            return tooLarge;
        }

        if (principal.Tenant is { } tenant)
        {
            if (tags.TryGetValue(BusFlowPrincipal.TenantTag, out var given) && given != tenant)
            {
                return Problems.Invalid("tenant_tag_reserved", $"The '{BusFlowPrincipal.TenantTag}' tag is set from your credentials.");
            }

            tags[BusFlowPrincipal.TenantTag] = tenant;
        }

        var pipelineId = NewId.NextGuid();
        if (http.Request.Headers.TryGetValue("Idempotency-Key", out var keyHeader))
        {
            var key = keyHeader.ToString();
            if (key.Length is 0 or > MaxIdempotencyKeyLength)
            {
                return Problems.Invalid("invalid_idempotency_key", $"Idempotency-Key must be 1 to {MaxIdempotencyKeyLength} characters.");
            }

            var hash = Hash($"{name}\n{(input is { } i ? JsonSerializer.Serialize(i) : "null")}\n{string.Join('\n', tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key}={t.Value}"))}");
            var claim = await store.ClaimKeyAsync("start", ScopedKey(principal.Tenant, key), hash, pipelineId, http.RequestAborted);
            if (claim.RequestHash != hash)
            {
                return Problems.Of(StatusCodes.Status409Conflict, "idempotency_key_reused", "Idempotency key reused", "This Idempotency-Key was used with a different request body.");
            }

            pipelineId = claim.PipelineId;
        }

        using (var started = signals.Register(pipelineId))
        {
            // A repeat of an accepted start publishes again (the saga ignores starts of a pipeline it has),
            // so a start whose publish failed after its key was claimed still happens.
            if (await store.FindAsync(pipelineId, http.RequestAborted) is null)
            {
                if (await PublishCommandAsync(http, publish, new StartPipeline { PipelineId = pipelineId, Definition = name, Input = input, Tags = tags, TraceParent = PipelineActivities.Current }) is { } unavailable)
                {
                    return unavailable;
                }

                if (await store.FindAsync(pipelineId, http.RequestAborted) is null)
                {
                    await started.WaitAsync(options.Value.StartWait, http.RequestAborted);
                }
            }
        }

        return Results.Accepted($"/api/pipelines/{pipelineId}", new { pipelineId });
    }

    /// <summary>
    /// The latest pipelines the caller may see, newest first, and the store position read before
    /// them: subscribing to <c>*</c> after it misses nothing that happened since.
    /// </summary>
    /// <summary>
    /// Which definition versions this process has and which still have running pipelines (of the
    /// caller's tenant, for a tenant's key), so that an operator knows when an old version can go.
    /// </summary>
    private static async Task<IResult> VersionsAsync(HttpContext http, PipelineStore store, PipelineRegistry registry)
    {
        var running = await store.RunningVersionsAsync(http.Principal().Tenant, http.RequestAborted);
        var registered = registry.Versions.ToDictionary(d => (Definition: d.Name, d.Version), d => !d.Draining);
        var rows = registered.Keys.Union(running.Keys)
            .Select(k => new DefinitionVersionView(k.Definition, k.Version, registered.GetValueOrDefault(k), registered.ContainsKey(k), running.GetValueOrDefault(k)))
            .OrderBy(v => v.Definition, StringComparer.Ordinal).ThenByDescending(v => v.Current).ThenBy(v => v.Version, StringComparer.Ordinal);
        return Results.Ok(rows);
    }

    private static async Task<IResult> ListAsync(HttpContext http, PipelineStore store, PipelineEventReader reader, PipelineRegistry registry)
    {
        if (!TryQuery(http.Request, "limit", 50, 1, 500, out var limit))
        {
            return Problems.Invalid("invalid_query", "limit is a whole number from 1 to 500.");
        }

        var principal = http.Principal();
        var position = await reader.LastPositionAsync(http.RequestAborted);
        var recent = await store.ListRecentAsync((int)limit, principal.Tenant, http.RequestAborted);
        var visible = recent.Where(p => principal.Sees(p.Tags)).Take((int)limit).Select(p => PipelineSummaryView.From(p, registry.Find(p.Definition, p.DefinitionVersion)));
        return Results.Ok(new { pipelines = visible, position });
    }

    private static async Task<IResult> StatusAsync(HttpContext http, string id, PipelineStore store)
    {
        var (state, problem) = await FindVisibleAsync(http, id, store);
        return problem ?? Results.Ok(PipelineView.From(state!));
    }

    private static async Task<IResult> CancelAsync(HttpContext http, string id, PipelineStore store, IPublishEndpoint publish)
    {
        var (state, problem) = await FindVisibleAsync(http, id, store);
        if (problem is not null)
        {
            return problem;
        }

        if (state!.Status != PipelineStatus.Running)
        {
            return Problems.Of(StatusCodes.Status409Conflict, "pipeline_finished", "Pipeline already finished", $"Pipeline {state.CorrelationId} is {state.Status}; there is nothing to cancel.");
        }

        if (await PublishCommandAsync(http, publish, new CancelPipeline { PipelineId = state.CorrelationId, Reason = $"cancelled through the API by {http.Principal().Name}" }) is { } unavailable)
        {
            return unavailable;
        }

        return Results.Accepted($"/api/pipelines/{state.CorrelationId}", new { pipelineId = state.CorrelationId });
    }

    private static async Task<IResult> EventsAsync(HttpContext http, string id, PipelineStore store, PipelineEventReader reader, PipelineSignals signals, SubscriptionHub hub)
    {
        if (!TryQuery(http.Request, "after", 0, 0, long.MaxValue, out var after)
            || !TryQuery(http.Request, "limit", 100, 1, 1000, out var limit)
            || !TryQuery(http.Request, "waitMs", 0, 0, 60_000, out var waitMs))
        {
            return Problems.Invalid("invalid_query", "after (>= 0), limit (1 to 1000) and waitMs (0 to 60000) are whole numbers.");
        }

        var (state, problem) = await FindVisibleAsync(http, id, store);
        if (problem is not null)
        {
            return problem;
        }

        // Wait until something newer is readable or waitMs is over. A wake-up can come for an event
        // already read (the live feed may trail the store), so read again and keep waiting if needed.
        var deadline = DateTime.UtcNow.AddMilliseconds(waitMs);
        while (true)
        {
            using var registration = signals.Register(state!.CorrelationId);
            var page = await reader.ReadPipelinePageAsync(state.CorrelationId, after, (int)limit, http.RequestAborted);
            var left = deadline - DateTime.UtcNow;
            if (page.RowsRead > 0 || left <= TimeSpan.Zero)
            {
                return new EventPageResult(page);
            }

            // A waiting long-poll holds a connection of the node and of its tenant's share.
            var (wait, refused) = hub.TryWait(http.Principal());
            if (refused is not null)
            {
                return TooManyConnections(http, refused);
            }

            using (wait)
            {
                await registration.WaitAsync(left, http.RequestAborted);
            }
        }
    }

    /// <summary>503 with Retry-After: the node is full, or the caller's tenant holds its share.</summary>
    private static IResult TooManyConnections(HttpContext http, Refusal refused)
    {
        http.Response.Headers.RetryAfter = "5";
        return Problems.Of(StatusCodes.Status503ServiceUnavailable, "too_many_connections", "Too many connections", refused.Detail);
    }

    private static async Task StreamAsync(HttpContext http, string id, PipelineStore store, SubscriptionHub hub, EdgeMetrics metrics)
    {
        var principal = http.Principal();
        // An EventSource reconnecting keeps its URL (?after=) and sends Last-Event-ID: the later one wins.
        var lastEventId = http.Request.Headers["Last-Event-ID"].ToString();
        var lastEvent = 0L;
        if ((lastEventId.Length > 0 && (!long.TryParse(lastEventId, out lastEvent) || lastEvent < 0)) || !TryQuery(http.Request, "after", 0, 0, long.MaxValue, out var after))
        {
            await Problems.Invalid("invalid_query", "after and Last-Event-ID are seqs (whole numbers >= 0).").ExecuteAsync(http);
            return;
        }

        after = Math.Max(after, lastEvent);
        var eventTypes = EventTypes(http.Request);
        if (eventTypes?.FirstOrDefault(t => !SubscribeRequest.KnownEventTypes.Contains(t)) is { } unknownType)
        {
            await Problems.Invalid("unknown_event_type", $"Unknown event type '{Problems.Truncate(unknownType)}'; known: {string.Join(", ", SubscribeRequest.KnownEventTypes)}.").ExecuteAsync(http);
            return;
        }

        // The final event always comes, so the stream ends when the pipeline does.
        eventTypes?.UnionWith([nameof(PipelineCompleted), nameof(PipelineFailed), nameof(PipelineCancelled)]);

        var (state, problem) = await FindVisibleAsync(http, id, store);
        if (problem is not null)
        {
            await problem.ExecuteAsync(http);
            return;
        }

        if (state!.Status != PipelineStatus.Running && after >= state.LastSeq)
        {
            // Finished and fully seen: 204 tells EventSource to stop reconnecting.
            http.Response.StatusCode = StatusCodes.Status204NoContent;
            return;
        }

        var connection = new SseConnection(http.Response, principal, hub.Options, metrics);
        if (hub.TryOpen(connection) is { } refused)
        {
            await TooManyConnections(http, refused).ExecuteAsync(http);
            return;
        }

        // Several events waiting at once go out with one flush; the stream's format is the same.
        var subscription = new Subscription(state.CorrelationId.ToString(), state.CorrelationId, new PipelineEventFilter { EventTypes = eventTypes }, connection, after) { Batch = true };
        try
        {
            hub.Add(subscription);
            await connection.RunAsync(http.RequestAborted);
        }
        finally
        {
            hub.Remove(subscription);
            hub.Closed(connection);
        }
    }

    private static async Task<IResult> ActionAsync(HttpContext http, string id, string suspendId, PipelineStore store, IPublishEndpoint publish)
    {
        if (!Guid.TryParse(suspendId, out var suspension))
        {
            return Problems.Invalid("invalid_suspend_id", $"'{Problems.Truncate(suspendId)}' is not a suspension id (a uuid).");
        }

        var (state, problem) = await FindVisibleAsync(http, id, store);
        if (problem is not null)
        {
            return problem;
        }

        var (payload, bodyProblem) = await ReadJsonAsync(http.Request, allowEmpty: true);
        if (bodyProblem is not null)
        {
            return bodyProblem;
        }

        var record = await store.FindSuspensionAsync(state!.CorrelationId, suspension, http.RequestAborted);
        if (record is null)
        {
            return Problems.Of(StatusCodes.Status404NotFound, "suspension_not_found", "Suspension not found", $"Pipeline {state.CorrelationId} has no suspension {suspension}.");
        }

        var payloadText = payload.ValueKind == JsonValueKind.Undefined ? "null" : JsonSerializer.Serialize(payload);
        var hash = Hash($"{http.Request.Headers["Idempotency-Key"]}\n{payloadText}");
        var answered = record.ClosedAt is null
            ? await store.ClaimKeyAsync("action", suspension.ToString(), hash, state.CorrelationId, http.RequestAborted)
            : await store.FindKeyAsync("action", suspension.ToString(), http.RequestAborted);
        if (answered?.RequestHash != hash)
        {
            return Problems.Of(
                StatusCodes.Status409Conflict,
                "suspension_closed",
                "Suspension already closed",
                answered is null ? $"Suspension {suspension} is no longer open (it expired or its pipeline ended)." : $"Suspension {suspension} was already answered with another request.");
        }

        if (record.ClosedAt is null)
        {
            var action = new SubmitStepAction { PipelineId = state.CorrelationId, SuspendId = suspension, Payload = payload.ValueKind == JsonValueKind.Undefined ? null : payload };
            if (await PublishCommandAsync(http, publish, action) is { } unavailable)
            {
                return unavailable;
            }
        }

        return Results.Accepted($"/api/pipelines/{state.CorrelationId}", new { pipelineId = state.CorrelationId, suspendId = suspension });
    }

    /// <summary>
    /// Publishes a command for the saga. A broker that fails the publish or does not confirm it
    /// within <see cref="EdgeOptions.BrokerTimeout"/> answers <c>503 broker_unavailable</c> with
    /// Retry-After; repeating the request is safe (a start by its Idempotency-Key; the saga applies
    /// a cancel or an answer once).
    /// </summary>
    private static async Task<IResult?> PublishCommandAsync<T>(HttpContext http, IPublishEndpoint publish, T command)
        where T : class
    {
        var options = http.RequestServices.GetRequiredService<IOptions<EdgeOptions>>().Value;
        try
        {
            await publish.Publish(command, http.RequestAborted).WaitAsync(options.BrokerTimeout, http.RequestAborted);
            return null;
        }
        catch (Exception ex) when (!http.RequestAborted.IsCancellationRequested && IsBrokerFailure(ex))
        {
            var logger = http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(PipelinesApi));
            LogBrokerUnavailable(logger, ex, typeof(T).Name);
            http.Response.Headers.RetryAfter = "5";
            return Problems.Of(
                StatusCodes.Status503ServiceUnavailable,
                "broker_unavailable",
                "Message broker unavailable",
                ex is TimeoutException
                    ? $"The message broker did not confirm the {typeof(T).Name} command within {options.BrokerTimeout.TotalSeconds:0.#} s, so it may or may not take effect. Repeat the request shortly; that is safe (a start with the same Idempotency-Key)."
                    : $"The message broker could not take the {typeof(T).Name} command ({ex.GetType().Name}). Repeat the request shortly; that is safe (a start with the same Idempotency-Key).");
        }
    }

    /// <summary>
    /// The broker or the way to it failed (worth repeating later); anything else is a fault of this
    /// node and stays a 500 rather than a 503 that clients would retry without end.
    /// </summary>
    private static bool IsBrokerFailure(Exception ex) =>
        ex is TimeoutException or MassTransitException or System.IO.IOException or System.Net.Sockets.SocketException or OperationCanceledException
        || ex.GetType().Namespace?.StartsWith("RabbitMQ.Client", StringComparison.Ordinal) == true
        // RabbitMQ.Client 7 disposes a channel under a publish when the connection drops; the
        // publish then fails with the channel's semaphore disposed (seen in the broker-away spec).
        || (ex is ObjectDisposedException && ex.StackTrace?.Contains("RabbitMQ.Client.", StringComparison.Ordinal) == true);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Publishing {Command} failed; answered 503 broker_unavailable")]
    private static partial void LogBrokerUnavailable(ILogger logger, Exception exception, string command);

    /// <summary>The pipeline if it exists and the caller may see it; another tenant's pipeline is reported exactly like a missing one.</summary>
    private static async Task<(PipelineState? State, IResult? Problem)> FindVisibleAsync(HttpContext http, string id, PipelineStore store)
    {
        if (!Guid.TryParse(id, out var pipelineId))
        {
            return (null, Problems.InvalidPipelineId(id));
        }

        var state = await store.FindAsync(pipelineId, http.RequestAborted);
        return state is not null && http.Principal().Sees(state.Tags) ? (state, null) : (null, Problems.PipelineNotFound(pipelineId));
    }

    private static async Task<(JsonElement Body, IResult? Problem)> ReadJsonAsync(HttpRequest request, bool allowEmpty = false)
    {
        if (request.ContentLength > MaxBodyBytes)
        {
            return (default, Problems.Of(StatusCodes.Status413PayloadTooLarge, "body_too_large", "Body too large", $"Bodies are limited to {MaxBodyBytes} bytes."));
        }

        // Read at most one byte past the limit: a chunked body (no Content-Length) is refused as soon
        // as it passes the limit, not buffered whole first.
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, MaxBodyBytes + 1 - buffer.Length)), request.HttpContext.RequestAborted)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > MaxBodyBytes)
            {
                return (default, Problems.Of(StatusCodes.Status413PayloadTooLarge, "body_too_large", "Body too large", $"Bodies are limited to {MaxBodyBytes} bytes."));
            }
        }

        if (buffer.Length == 0 && allowEmpty)
        {
            return (default, null);
        }

        // JSON is UTF-8: a body that is not would reach the store with its bad bytes replaced.
        if (!System.Text.Unicode.Utf8.IsValid(buffer.GetBuffer().AsSpan(0, (int)buffer.Length)))
        {
            return (default, Problems.Invalid("invalid_string", "The body is not valid UTF-8."));
        }

        try
        {
            using var document = JsonDocument.Parse(buffer.ToArray());
            if (JsonStrings.FindInvalid(document.RootElement) is { } path)
            {
                return (default, Problems.Invalid("invalid_string", $"The string at {SubscribeRequest.Truncate(path)} is not valid Unicode (a lone surrogate escape)."));
            }

            return (document.RootElement.Clone(), null);
        }
        catch (JsonException ex)
        {
            return (default, Problems.Invalid("invalid_json", $"The body is not JSON: {ex.Message}"));
        }
    }

    private static bool TryQuery(HttpRequest request, string name, long fallback, long min, long max, out long value)
    {
        value = fallback;
        if (!request.Query.TryGetValue(name, out var text))
        {
            return true;
        }

        return long.TryParse(text, out value) && value >= min && value <= max;
    }

    private static HashSet<string>? EventTypes(HttpRequest request) =>
        request.Query.TryGetValue("eventTypes", out var types) && types.Count > 0
            ? types.SelectMany(t => (t ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToHashSet(StringComparer.Ordinal)
            : null;

    /// <summary>
    /// An idempotency key within its tenant: <c>tenant:key</c>, with <c>\</c> and <c>:</c> in the tenant
    /// escaped, so that tenant <c>a:b</c> with key <c>c</c> and tenant <c>a</c> with key <c>b:c</c> stay
    /// apart. Keys of tenants without either character are stored as before.
    /// </summary>
    internal static string ScopedKey(string? tenant, string key) =>
        $"{tenant?.Replace("\\", "\\\\", StringComparison.Ordinal).Replace(":", "\\:", StringComparison.Ordinal)}:{key}";

    private static string Hash(string value) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(value)));
}
