using BusFlow.Edge.Live;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace BusFlow.Edge.Http;

/// <summary>
/// The services the REST handlers share, bound with <c>[AsParameters]</c> (every one from the
/// container, never from the request): the engine's read seams, which the host's store
/// implements, and the edge's own parts.
/// </summary>
internal sealed record EdgeServices(
    [FromServices] IPipelineQueries Pipelines,
    [FromServices] IPipelineEventLog Events,
    [FromServices] IIdempotencyKeys Keys,
    [FromServices] PipelineRegistry Registry,
    [FromServices] PipelineSignals Signals,
    [FromServices] SubscriptionHub Hub,
    [FromServices] IOptions<EdgeOptions> Options,
    [FromServices] TimeProvider Time,
    [FromServices] ILoggerFactory Loggers);

/// <summary>The answer to an accepted start or cancel: the pipeline to follow (<c>Location</c> names its status).</summary>
internal sealed record PipelineAccepted(Guid PipelineId);

/// <summary>The answer to an accepted answer of a suspended step.</summary>
internal sealed record ActionAccepted(Guid PipelineId, Guid SuspendId);

/// <summary>
/// <c>GET /api/pipelines</c>: the latest pipelines, and the store position read before them
/// (subscribing to <c>*</c> after it misses nothing that happened since).
/// </summary>
internal sealed record PipelineList(IEnumerable<PipelineSummaryView> Pipelines, long Position);
