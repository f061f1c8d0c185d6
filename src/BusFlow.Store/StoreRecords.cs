using BusFlow.Contracts;

namespace BusFlow.Store;

/// <summary>
/// One row of the append-only event log. <see cref="Position"/> is given in the transaction that
/// writes the row, under the position counter's lock, so positions follow commit order and a reader
/// by position never skips a row that committed late (see docs/architecture.md); rows an older
/// version wrote without one are positioned by the outbox delivery. A row is delivered when its position is at or
/// below the outbox lease's <see cref="StoreLease.DeliveredUpTo"/>; the row itself is never
/// rewritten for that.
/// </summary>
public sealed class PipelineEventRecord
{
    public long Id { get; set; }

    public long? Position { get; set; }

    public Guid PipelineId { get; set; }

    public long Seq { get; set; }

    public string Type { get; set; } = "";

    /// <summary>The event's <see cref="PipelineTags.Tenant"/> tag, so that a tenant's catch-up reads only its own rows.</summary>
    public string? Tenant { get; set; }

    public DateTimeOffset Timestamp { get; set; }

    /// <summary>The event as JSON, serialised through its base type (with its <c>type</c>).</summary>
    public string Payload { get; set; } = "";

    /// <summary>
    /// The event this row was written from, while the process that decided it still holds the row
    /// (not mapped): the delivery publishes it without reading <see cref="Payload"/> back.
    /// </summary>
    internal PipelineEvent? Decided { get; set; }
}

/// <summary>
/// One item of a map step, kept apart from its pipeline's row so that a transition writes the items
/// it changed, not the whole map (docs/architecture.md). The pipeline row's step tree records how
/// many rows the step has; <see cref="Body"/> is the <see cref="WorkItem"/> as JSON.
/// </summary>
public sealed class WorkItemRecord
{
    public Guid PipelineId { get; set; }

    /// <summary>The step's place in the pipeline's <see cref="PipelineState.Steps"/>.</summary>
    public int Step { get; set; }

    /// <summary>The item's index in the mapped list.</summary>
    public int ItemIndex { get; set; }

    public string Body { get; set; } = "";
}

/// <summary>A message a transition or a step decided to send, delivered to the broker after commit.</summary>
public sealed class OutboxMessageRecord
{
    public long Id { get; set; }

    /// <summary>The MessageId it is sent with, every time it is sent, so receivers can de-duplicate.</summary>
    public Guid MessageId { get; set; }

    public Guid PipelineId { get; set; }

    /// <summary>The queue to send to; null to publish.</summary>
    public string? Destination { get; set; }

    public string MessageType { get; set; } = "";

    public string Body { get; set; } = "";

    public DateTimeOffset CreatedAt { get; set; }

    public DateTimeOffset? DeliveredAt { get; set; }
}

/// <summary>A message a consumer has handled; a redelivery with the same id is not handled again.</summary>
public sealed class InboxRecord
{
    public Guid MessageId { get; set; }

    public string Consumer { get; set; } = "";

    public DateTimeOffset ReceivedAt { get; set; }
}

/// <summary>An idempotency key: the same key maps to one pipeline (or action) forever.</summary>
public sealed class IdempotencyKeyRecord
{
    public string Scope { get; set; } = "";

    public string Key { get; set; } = "";

    /// <summary>A hash of the request body: the same key with another body is a conflict.</summary>
    public string RequestHash { get; set; } = "";

    public Guid PipelineId { get; set; }

    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>A step waiting for an outside answer.</summary>
public sealed class SuspensionRecord
{
    public Guid SuspendId { get; set; }

    public Guid PipelineId { get; set; }

    public string StepName { get; set; } = "";

    public int? ItemIndex { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    public DateTimeOffset? ExpiresAt { get; set; }

    /// <summary>When the suspension was answered, expired or cancelled; null while open.</summary>
    public DateTimeOffset? ClosedAt { get; set; }
}

/// <summary>A named lease held by one process at a time (the outbox deliverer), the last position given and how far the events were delivered.</summary>
public sealed class StoreLease
{
    public string Name { get; set; } = "";

    public string? Owner { get; set; }

    public DateTimeOffset ExpiresAt { get; set; }

    public long LastPosition { get; set; }

    /// <summary>Every event row at or below this position was confirmed by the broker (it only grows).</summary>
    public long DeliveredUpTo { get; set; }
}
