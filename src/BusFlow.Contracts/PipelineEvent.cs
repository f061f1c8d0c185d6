using System.Text.Json.Serialization;

namespace BusFlow.Contracts;

/// <summary>
/// What every pipeline event carries. The same records travel on the bus, are stored, and are sent
/// to clients; serialised through this base type they carry a <c>type</c> discriminator. The
/// envelope (pipeline, seq, time, definition) is set in one place by the engine that decides the
/// event, so it is required in the JSON (<see cref="JsonRequiredAttribute"/>: an event read without
/// one is refused) rather than by the compiler in every object initialiser.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type")]
[JsonDerivedType(typeof(PipelineStarted), nameof(PipelineStarted))]
[JsonDerivedType(typeof(StepStarted), nameof(StepStarted))]
[JsonDerivedType(typeof(StepProgress), nameof(StepProgress))]
[JsonDerivedType(typeof(StepCompleted), nameof(StepCompleted))]
[JsonDerivedType(typeof(StepFailed), nameof(StepFailed))]
[JsonDerivedType(typeof(StepSuspended), nameof(StepSuspended))]
[JsonDerivedType(typeof(PipelineCompleted), nameof(PipelineCompleted))]
[JsonDerivedType(typeof(PipelineFailed), nameof(PipelineFailed))]
[JsonDerivedType(typeof(PipelineCancelled), nameof(PipelineCancelled))]
public abstract record PipelineEvent
{
    // The JSON opens with these three, right after the type: readers see first which event it is,
    // and replay finds the position to splice in without reading the rest (StoredEventJson).

    /// <summary>The pipeline instance the event belongs to.</summary>
    [JsonPropertyOrder(-3)]
    [JsonRequired]
    public Guid PipelineId { get; init; }

    /// <summary>Per-pipeline sequence number: 1, 2, 3, ... without gaps, in the order the saga decided them.</summary>
    [JsonPropertyOrder(-2)]
    [JsonRequired]
    public long Seq { get; init; }

    /// <summary>Store-wide position that only grows; resume point for wildcard subscribers. 0 when not yet recorded.</summary>
    [JsonPropertyOrder(-1)]
    public long Position { get; init; }

    /// <summary>When the saga decided the event.</summary>
    [JsonRequired]
    public DateTimeOffset Timestamp { get; init; }

    /// <summary>The name of the pipeline definition.</summary>
    [JsonRequired]
    public string Definition { get; init; } = "";

    /// <summary>Tags given at start; child pipelines inherit their parent's tags.</summary>
    public IReadOnlyDictionary<string, string> Tags { get; init; } = EmptyTags;

    /// <summary>Set on events of a child pipeline: the pipeline whose step started it.</summary>
    public Guid? ParentPipelineId { get; init; }

    /// <summary>
    /// The W3C trace context (<c>traceparent</c>) of the transition that decided the event, when it
    /// was traced: a subscriber continues the pipeline's trace from here, as with the CloudEvents
    /// distributed tracing extension. Left out of the JSON when absent.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? TraceParent { get; init; }

    /// <summary>The event type name, as used on the wire and in filters.</summary>
    [JsonIgnore]
    public string EventType => GetType().Name;

    /// <summary>Shared empty tag set.</summary>
    public static readonly IReadOnlyDictionary<string, string> EmptyTags = new Dictionary<string, string>();
}

/// <summary>An event about one step (or one item of a map step).</summary>
public abstract record StepEvent : PipelineEvent
{
    /// <summary>The step's name in its definition.</summary>
    public required string StepName { get; init; }

    /// <summary>The step's index in the definition's topological order.</summary>
    public required int StepIndex { get; init; }

    /// <summary>Attempt number, starting at 1.</summary>
    public required int Attempt { get; init; }

    /// <summary>For map steps: the index of the item in the mapped list; null for the step as a whole.</summary>
    public int? ItemIndex { get; init; }
}

/// <summary>
/// Several recorded events in one bus message, in position order, when the store publishes events in
/// batches (<c>BusFlow:Store:EventPublishing</c> = <c>Batched</c>). A pipeline's events are never split
/// across batches out of order. Subscribers built on <c>PipelineEventsConsumer</c> receive the events
/// one by one either way.
/// </summary>
public sealed record PipelineEventBatch
{
    /// <summary>The events, in position order.</summary>
    public required IReadOnlyList<PipelineEvent> Events { get; init; }
}
