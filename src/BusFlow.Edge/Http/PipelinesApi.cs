using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Edge.Auth;
using BusFlow.Edge.Live;
using BusFlow.Edge.WebSockets;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace BusFlow.Edge.Http;

/// <summary>
/// The REST API of the wire contract (docs/protocol.md): typed handlers over the engine's
/// read seams (<see cref="IPipelineQueries"/>, <see cref="IPipelineEventLog"/>,
/// <see cref="IIdempotencyKeys"/>), which the host's store implements.
/// </summary>
internal static partial class PipelinesApi
{
    private const int MaxIdempotencyKeyLength = 128;

    // Bodies are read by hand (JsonBody), whatever their Content-Type, and checked for what the edge
    // needs: no Accepts metadata, whose routing policy would answer 415 before the edge's own checks
    // (an Origin refused, a body too large) could give their reasons.
    public static void Map(IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("BusFlow").ProducesProblem(StatusCodes.Status401Unauthorized);
        api.MapGet("/definitions", ListDefinitions)
            .WithName("ListDefinitions").WithSummary("The pipeline definitions this process runs, current versions");
        api.MapGet("/definitions/versions", VersionsAsync)
            .WithName("ListDefinitionVersions").WithSummary("Definition versions this process has or that pipelines still run on, with how many run");
        api.MapGet("/definitions/{name}/versions/{version}", DefinitionVersion)
            .WithName("GetDefinitionVersion").WithSummary("One version of a definition, as this process has it");
        api.MapPost("/pipelines", StartAsync)
            .WithName("StartPipeline").WithSummary("Starts a pipeline; repeatable with an Idempotency-Key header");
        api.MapGet("/pipelines", ListAsync)
            .WithName("ListPipelines").WithSummary("The latest pipelines the caller may see, and the store position read before them");
        api.MapGet("/pipelines/{id}", StatusAsync)
            .WithName("GetPipeline").WithSummary("A pipeline's status and step tree");
        api.MapPost("/pipelines/{id}/cancel", CancelAsync)
            .WithName("CancelPipeline").WithSummary("Asks a running pipeline to cancel");
        api.MapGet("/pipelines/{id}/events", EventsAsync)
            .WithName("ReadPipelineEvents").WithSummary("A page of a pipeline's events after a seq; waits up to waitMs for one (long-poll)")
            .Produces(StatusCodes.Status200OK, contentType: "application/json");
        api.MapGet("/pipelines/{id}/stream", StreamAsync)
            .WithName("StreamPipelineEvents").WithSummary("A pipeline's events as server-sent events, resuming after Last-Event-ID")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream");
        api.MapGet("/stream", StreamAllAsync)
            .WithName("StreamAllEvents").WithSummary("Every pipeline's events the caller may see as server-sent events, in position order, resuming after Last-Event-ID")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream");
        api.MapPost("/pipelines/{id}/actions/{suspendId}", ActionAsync)
            .WithName("AnswerSuspension").WithSummary("Answers a suspended step; repeatable with the same body");
        api.MapGet("/metrics", (EdgeMetrics metrics) => TypedResults.Ok(metrics.Snapshot()))
            .WithName("EdgeMetrics").WithSummary("This edge node's connection and latency figures");
    }

    private static Ok<IEnumerable<DefinitionView>> ListDefinitions(PipelineRegistry registry) =>
        TypedResults.Ok(registry.Definitions.OrderBy(d => d.Name, StringComparer.Ordinal).Select(d => DefinitionView.From(d, registry)));

    private static Results<Ok<DefinitionView>, ProblemHttpResult> DefinitionVersion(string name, string version, PipelineRegistry registry) =>
        registry.Find(name, version) is { } definition && version.Length > 0
            ? TypedResults.Ok(DefinitionView.From(definition, registry))
            : Problems.Of(StatusCodes.Status404NotFound, "definition_version_not_found", "Definition version not found", $"This process has no definition '{Problems.Truncate(name)}' in the version '{Problems.Truncate(version)}'.");

    /// <summary>
    /// A start, in its steps: read and check the request; claim its Idempotency-Key (a repeat gets
    /// the pipeline of the first request); publish it unless the pipeline exists; wait briefly until
    /// the saga has recorded it, so that a status read right after the 202 finds it.
    /// </summary>
    private static async Task<Results<Accepted<PipelineAccepted>, ProblemHttpResult>> StartAsync(HttpContext http, [AsParameters] EdgeServices edge, IPublishEndpoint publish)
    {
        var (body, bodyProblem) = await JsonBody.ReadAsync(http.Request);
        if (bodyProblem is not null)
        {
            return bodyProblem;
        }

        var (request, problem) = StartRequest.Read(body, edge.Registry, edge.Options.Value, http.Principal());
        if (problem is not null)
        {
            return problem;
        }

        var (pipelineId, keyProblem) = await ClaimStartAsync(http, edge.Keys, request!);
        if (keyProblem is not null)
        {
            return keyProblem;
        }

        if (await PublishStartAsync(http, edge, publish, request!, pipelineId) is { } unavailable)
        {
            return unavailable;
        }

        return TypedResults.Accepted($"/api/pipelines/{pipelineId}", new PipelineAccepted(pipelineId));
    }

    /// <summary>The new pipeline's id, or the first request's under a repeated Idempotency-Key; a key reused with another request is refused.</summary>
    private static async Task<(Guid PipelineId, ProblemHttpResult? Problem)> ClaimStartAsync(HttpContext http, IIdempotencyKeys keys, StartRequest request)
    {
        var pipelineId = NewId.NextGuid();
        if (!http.Request.Headers.TryGetValue("Idempotency-Key", out var keyHeader))
        {
            return (pipelineId, null);
        }

        var key = keyHeader.ToString();
        if (key.Length is 0 or > MaxIdempotencyKeyLength)
        {
            return (default, Problems.Invalid("invalid_idempotency_key", $"Idempotency-Key must be 1 to {MaxIdempotencyKeyLength} characters."));
        }

        var hash = Hash(request.Fingerprint());
        var claim = await keys.ClaimAsync("start", ScopedKey(http.Principal().Tenant, key), hash, pipelineId, http.RequestAborted);
        return claim.RequestHash == hash
            ? (claim.PipelineId, null)
            : (default, Problems.Of(StatusCodes.Status409Conflict, "idempotency_key_reused", "Idempotency key reused", "This Idempotency-Key was used with a different request body."));
    }

    /// <summary>
    /// Publishes the start unless the pipeline is already recorded, then waits up to
    /// <see cref="EdgeOptions.StartWait"/> for the saga to record it. A repeat of an accepted start
    /// publishes again (the saga ignores starts of a pipeline it has), so a start whose publish
    /// failed after its key was claimed still happens.
    /// </summary>
    private static async Task<ProblemHttpResult?> PublishStartAsync(HttpContext http, EdgeServices edge, IPublishEndpoint publish, StartRequest request, Guid pipelineId)
    {
        using var started = edge.Signals.Register(pipelineId);
        if (await edge.Pipelines.ExistsAsync(pipelineId, http.RequestAborted))
        {
            return null;
        }

        var command = new StartPipeline { PipelineId = pipelineId, Definition = request.Name, Input = request.Input, Tags = request.Tags, TraceParent = PipelineActivities.Current };
        if (await PublishCommandAsync(http, edge, publish, command) is { } unavailable)
        {
            return unavailable;
        }

        if (!await edge.Pipelines.ExistsAsync(pipelineId, http.RequestAborted))
        {
            await started.WaitAsync(edge.Options.Value.StartWait, http.RequestAborted);
        }

        return null;
    }

    /// <summary>
    /// Which definition versions this process has and which still have running pipelines (of the
    /// caller's tenant, for a tenant's key), so that an operator knows when an old version can go.
    /// </summary>
    private static async Task<Ok<IEnumerable<DefinitionVersionView>>> VersionsAsync(HttpContext http, [AsParameters] EdgeServices edge)
    {
        var running = await edge.Pipelines.RunningVersionsAsync(http.Principal().Tenant, http.RequestAborted);
        var registered = edge.Registry.Versions.ToDictionary(d => (Definition: d.Name, d.Version), d => !d.Draining);
        return TypedResults.Ok<IEnumerable<DefinitionVersionView>>(registered.Keys.Union(running.Keys)
            .Select(k => new DefinitionVersionView(k.Definition, k.Version, registered.GetValueOrDefault(k), registered.ContainsKey(k), running.GetValueOrDefault(k)))
            .OrderBy(v => v.Definition, StringComparer.Ordinal).ThenByDescending(v => v.Current).ThenBy(v => v.Version, StringComparer.Ordinal));
    }

    /// <summary>
    /// The latest pipelines the caller may see, newest first, and the store position read before
    /// them: subscribing to <c>*</c> after it misses nothing that happened since.
    /// </summary>
    private static async Task<Results<Ok<PipelineList>, ProblemHttpResult>> ListAsync(HttpContext http, [AsParameters] EdgeServices edge)
    {
        if (!TryQuery(http.Request, "limit", 50, 1, 500, out var limit))
        {
            return Problems.Invalid("invalid_query", "limit is a whole number from 1 to 500.");
        }

        var principal = http.Principal();
        var position = await edge.Events.LastPositionAsync(http.RequestAborted);
        var recent = await edge.Pipelines.ListRecentAsync((int)limit, principal.Tenant, http.RequestAborted);
        var visible = recent.Where(p => principal.Sees(p.Tags)).Take((int)limit).Select(p => PipelineSummaryView.From(p, edge.Registry.Find(p.Definition, p.DefinitionVersion)));
        return TypedResults.Ok(new PipelineList(visible, position));
    }

    private static async Task<Results<Ok<PipelineView>, ProblemHttpResult>> StatusAsync(HttpContext http, string id, [AsParameters] EdgeServices edge)
    {
        var (state, problem) = await FindVisibleAsync(http, id, edge.Pipelines);
        return problem is null ? TypedResults.Ok(PipelineView.From(state!)) : problem;
    }

    private static async Task<Results<Accepted<PipelineAccepted>, ProblemHttpResult>> CancelAsync(HttpContext http, string id, [AsParameters] EdgeServices edge, IPublishEndpoint publish)
    {
        var (state, problem) = await FindVisibleAsync(http, id, edge.Pipelines);
        if (problem is not null)
        {
            return problem;
        }

        if (state!.Status != PipelineStatus.Running)
        {
            return Problems.Of(StatusCodes.Status409Conflict, "pipeline_finished", "Pipeline already finished", $"Pipeline {state.CorrelationId} is {state.Status}; there is nothing to cancel.");
        }

        if (await PublishCommandAsync(http, edge, publish, new CancelPipeline { PipelineId = state.CorrelationId, Reason = $"cancelled through the API by {http.Principal().Name}" }) is { } unavailable)
        {
            return unavailable;
        }

        return TypedResults.Accepted($"/api/pipelines/{state.CorrelationId}", new PipelineAccepted(state.CorrelationId));
    }

    private static async Task<Results<EventPageResult, ProblemHttpResult>> EventsAsync(HttpContext http, string id, [AsParameters] EdgeServices edge)
    {
        if (!TryQuery(http.Request, "after", 0, 0, long.MaxValue, out var after)
            || !TryQuery(http.Request, "limit", 100, 1, 1000, out var limit)
            || !TryQuery(http.Request, "waitMs", 0, 0, 60_000, out var waitMs))
        {
            return Problems.Invalid("invalid_query", "after (>= 0), limit (1 to 1000) and waitMs (0 to 60000) are whole numbers.");
        }

        var (state, problem) = await FindVisibleAsync(http, id, edge.Pipelines);
        if (problem is not null)
        {
            return problem;
        }

        // Wait until something newer is readable or waitMs is over. A wake-up can come for an event
        // already read (the live feed may trail the store), so read again and keep waiting if needed.
        var waitStarted = edge.Time.GetTimestamp();
        while (true)
        {
            using var registration = edge.Signals.Register(state!.CorrelationId);
            var page = await edge.Events.ReadPipelinePageAsync(state.CorrelationId, after, (int)limit, http.RequestAborted);
            var left = TimeSpan.FromMilliseconds(waitMs) - edge.Time.GetElapsedTime(waitStarted);
            if (page.RowsRead > 0 || left <= TimeSpan.Zero)
            {
                return new EventPageResult(page);
            }

            // A waiting long-poll holds a connection of the node and of its tenant's share.
            var (wait, refused) = edge.Hub.TryWait(http.Principal());
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
    private static ProblemHttpResult TooManyConnections(HttpContext http, Refusal refused)
    {
        http.Response.Headers.RetryAfter = "5";
        return Problems.Of(StatusCodes.Status503ServiceUnavailable, "too_many_connections", "Too many connections", refused.Detail);
    }

    private static async Task StreamAsync(HttpContext http, string id, [AsParameters] EdgeServices edge, EdgeMetrics metrics)
    {
        if (await StreamStartAsync(http, "seqs") is not { } start)
        {
            return;
        }

        var (after, eventTypes, tags) = start;

        // The final event always comes, so the stream ends when the pipeline does.
        eventTypes?.UnionWith([nameof(PipelineCompleted), nameof(PipelineFailed), nameof(PipelineCancelled)]);

        var (state, problem) = await FindVisibleAsync(http, id, edge.Pipelines);
        if (problem is not null)
        {
            await problem.ExecuteAsync(http);
            return;
        }

        // Finished and fully seen, or tags that are not the pipeline's (all its events carry them): nothing to
        // send. 204 tells EventSource to stop reconnecting.
        if ((state!.Status != PipelineStatus.Running && after >= state.LastSeq)
            || tags?.Any(t => !state.Tags.TryGetValue(t.Key, out var value) || value != t.Value) == true)
        {
            http.Response.StatusCode = StatusCodes.Status204NoContent;
            return;
        }

        var connection = new SseConnection(http.Response, http.Principal(), edge.Hub.Options, metrics);
        await RunStreamAsync(http, edge, connection, new Subscription(state.CorrelationId.ToString(), state.CorrelationId, new PipelineEventFilter { EventTypes = eventTypes, Tags = tags }, connection, after ?? 0) { Batch = true });
    }

    /// <summary>
    /// Every pipeline the caller may see (<c>*</c>), as server-sent events with the position as the
    /// <c>id:</c>; from after <c>?after=</c> or <c>Last-Event-ID</c> (positions), or live when neither
    /// is given; <c>eventTypes</c> and <c>tag=key=value</c> (repeated) filter as a WebSocket
    /// subscription does. It does not end by itself.
    /// </summary>
    private static async Task StreamAllAsync(HttpContext http, [AsParameters] EdgeServices edge, EdgeMetrics metrics)
    {
        if (await StreamStartAsync(http, "positions") is not { } start)
        {
            return;
        }

        var (after, eventTypes, tags) = start;
        if (after is { } from && from > await edge.Events.LastPositionAsync(http.RequestAborted))
        {
            await Problems.Invalid("after_out_of_range", $"after {from} is beyond the last position recorded.").ExecuteAsync(http);
            return;
        }

        var connection = new SseConnection(http.Response, http.Principal(), edge.Hub.Options, metrics, everyPipeline: true);
        var filter = new PipelineEventFilter { EventTypes = eventTypes, Tags = tags };
        await RunStreamAsync(http, edge, connection, new Subscription("*", null, filter, connection, after) { Batch = true });
    }

    /// <summary>
    /// Where a stream starts (the later of <c>?after=</c> and <c>Last-Event-ID</c>; null when neither
    /// is given), its event types and its tags (<c>tag=key=value</c>, repeated); null, with the
    /// problem written, when any is invalid.
    /// </summary>
    private static async Task<(long? After, HashSet<string>? EventTypes, Dictionary<string, string>? Tags)?> StreamStartAsync(HttpContext http, string unit)
    {
        // An EventSource reconnecting keeps its URL (?after=) and sends Last-Event-ID: the later one wins.
        var lastEventId = http.Request.Headers["Last-Event-ID"].ToString();
        var lastEvent = 0L;
        if ((lastEventId.Length > 0 && (!long.TryParse(lastEventId, out lastEvent) || lastEvent < 0)) || !TryQuery(http.Request, "after", 0, 0, long.MaxValue, out var after))
        {
            await Problems.Invalid("invalid_query", $"after and Last-Event-ID are {unit} (whole numbers >= 0).").ExecuteAsync(http);
            return null;
        }

        var eventTypes = EventTypes(http.Request);
        if (eventTypes?.FirstOrDefault(t => !SubscribeRequest.KnownEventTypes.Contains(t)) is { } unknownType)
        {
            await Problems.Invalid("unknown_event_type", $"Unknown event type '{Problems.Truncate(unknownType)}'; known: {string.Join(", ", SubscribeRequest.KnownEventTypes)}.").ExecuteAsync(http);
            return null;
        }

        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var tag in http.Request.Query["tag"])
        {
            if (tag is null || tag.IndexOf('=', StringComparison.Ordinal) is not (> 0 and var at) || !tags.TryAdd(tag[..at], tag[(at + 1)..]))
            {
                await Problems.Invalid("invalid_query", $"tag '{Problems.Truncate(tag ?? "")}' is not key=value, or names a key given before.").ExecuteAsync(http);
                return null;
            }
        }

        var given = lastEventId.Length > 0 || http.Request.Query.ContainsKey("after");
        return (given ? Math.Max(after, lastEvent) : null, eventTypes, tags.Count == 0 ? null : tags);
    }

    /// <summary>Opens the stream when the node has room for another connection, and serves it until either side ends it.</summary>
    private static async Task RunStreamAsync(HttpContext http, EdgeServices edge, SseConnection connection, Subscription subscription)
    {
        if (edge.Hub.TryOpen(connection) is { } refused)
        {
            await TooManyConnections(http, refused).ExecuteAsync(http);
            return;
        }

        // Several events waiting at once go out with one flush; the stream's format is the same.
        try
        {
            edge.Hub.Add(subscription);
            await connection.RunAsync(http.RequestAborted);
        }
        finally
        {
            edge.Hub.Remove(subscription);
            edge.Hub.Closed(connection);
        }
    }

    /// <summary>
    /// An answer to a suspended step. The first answer claims the suspension (keyed by its id, with
    /// a hash of the Idempotency-Key header and the body); the same answer again is accepted without
    /// effect, another answer or one after the suspension closed is a conflict.
    /// </summary>
    private static async Task<Results<Accepted<ActionAccepted>, ProblemHttpResult>> ActionAsync(HttpContext http, string id, string suspendId, [AsParameters] EdgeServices edge, IPublishEndpoint publish)
    {
        if (!Guid.TryParse(suspendId, out var suspension))
        {
            return Problems.Invalid("invalid_suspend_id", $"'{Problems.Truncate(suspendId)}' is not a suspension id (a uuid).");
        }

        var (state, problem) = await FindVisibleAsync(http, id, edge.Pipelines);
        if (problem is not null)
        {
            return problem;
        }

        var (payload, bodyProblem) = await JsonBody.ReadAsync(http.Request, allowEmpty: true);
        if (bodyProblem is not null)
        {
            return bodyProblem;
        }

        var record = await edge.Pipelines.FindSuspensionAsync(state!.CorrelationId, suspension, http.RequestAborted);
        if (record is null)
        {
            return Problems.Of(StatusCodes.Status404NotFound, "suspension_not_found", "Suspension not found", $"Pipeline {state.CorrelationId} has no suspension {suspension}.");
        }

        var payloadText = payload.ValueKind == JsonValueKind.Undefined ? "null" : JsonSerializer.Serialize(payload);
        var hash = Hash($"{http.Request.Headers["Idempotency-Key"]}\n{payloadText}");
        var answered = record.ClosedAt is null
            ? await edge.Keys.ClaimAsync("action", suspension.ToString(), hash, state.CorrelationId, http.RequestAborted)
            : await edge.Keys.FindAsync("action", suspension.ToString(), http.RequestAborted);
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
            if (await PublishCommandAsync(http, edge, publish, action) is { } unavailable)
            {
                return unavailable;
            }
        }

        return TypedResults.Accepted($"/api/pipelines/{state.CorrelationId}", new ActionAccepted(state.CorrelationId, suspension));
    }

    /// <summary>
    /// Publishes a command for the saga. A broker that fails the publish or does not confirm it
    /// within <see cref="EdgeOptions.BrokerTimeout"/> answers <c>503 broker_unavailable</c> with
    /// Retry-After; repeating the request is safe (a start by its Idempotency-Key; the saga applies
    /// a cancel or an answer once).
    /// </summary>
    private static async Task<ProblemHttpResult?> PublishCommandAsync<T>(HttpContext http, EdgeServices edge, IPublishEndpoint publish, T command)
        where T : class
    {
        var options = edge.Options.Value;
        try
        {
            await publish.Publish(command, http.RequestAborted).WaitAsync(options.BrokerTimeout, http.RequestAborted);
            return null;
        }
        catch (Exception ex) when (!http.RequestAborted.IsCancellationRequested && IsBrokerFailure(ex))
        {
            LogBrokerUnavailable(edge.Loggers.CreateLogger(typeof(PipelinesApi)), ex, typeof(T).Name);
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
    private static async Task<(PipelineState? State, ProblemHttpResult? Problem)> FindVisibleAsync(HttpContext http, string id, IPipelineQueries pipelines)
    {
        if (!Guid.TryParse(id, out var pipelineId))
        {
            return (null, Problems.InvalidPipelineId(id));
        }

        var state = await pipelines.FindAsync(pipelineId, http.RequestAborted);
        return state is not null && http.Principal().Sees(state.Tags) ? (state, null) : (null, Problems.PipelineNotFound(pipelineId));
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
