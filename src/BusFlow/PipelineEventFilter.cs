using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// Selects events by pipeline, event type and tags (all given tags must match). Used by in-process
/// observers and by the edge's subscriptions alike.
/// </summary>
public sealed record PipelineEventFilter
{
    /// <summary>One pipeline, or null for every pipeline.</summary>
    public Guid? PipelineId { get; init; }

    /// <summary>Event type names to pass, or null/empty for all.</summary>
    public IReadOnlySet<string>? EventTypes { get; init; }

    /// <summary>Tags every passing event must carry with these values.</summary>
    public IReadOnlyDictionary<string, string>? Tags { get; init; }

    public bool Matches(PipelineEvent e)
    {
        if (PipelineId is { } id && e.PipelineId != id)
        {
            return false;
        }

        if (EventTypes is { Count: > 0 } types && !types.Contains(e.EventType))
        {
            return false;
        }

        if (Tags is { Count: > 0 } tags)
        {
            foreach (var (key, value) in tags)
            {
                if (!e.Tags.TryGetValue(key, out var actual) || !string.Equals(actual, value, StringComparison.Ordinal))
                {
                    return false;
                }
            }
        }

        return true;
    }
}
