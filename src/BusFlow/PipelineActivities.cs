using System.Diagnostics;
using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// BusFlow's spans (activity source <c>BusFlow</c>), one trace per pipeline run: each transition
/// (<c>busflow.transition</c>), each step run in its worker's process (<c>busflow.step</c>), each
/// event's delivery to the bus (<c>busflow.deliver</c>) and its push to an edge's subscribers
/// (<c>busflow.push</c>). A transition is a child of the message that caused it (MassTransit carries
/// the context in the message's headers), a step run of the transition that dispatched it (the
/// command names it, for a command sent late from the outbox or run in the saga's process), and an
/// event's delivery and push of the transition that decided it (the event names it, as the
/// CloudEvents tracing extension's <c>traceparent</c> does). Nothing is created without a listener.
/// </summary>
public static class PipelineActivities
{
    private static readonly ActivitySource Source = new(BusFlowTelemetry.Name);

    /// <summary>
    /// A transition of <paramref name="state"/> applying <paramref name="message"/>, in the trace of
    /// <paramref name="traceParent"/> (the pipeline's, or for a start the request's); under the
    /// current activity (the message's consume) when that is in the same trace, else linked to it.
    /// </summary>
    internal static Activity? Transition(PipelineState state, object message, string? traceParent)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var parent = Parent(traceParent);
        var current = Activity.Current;
        ActivityLink[]? links = current is not null && current.TraceId != parent.TraceId ? [new ActivityLink(current.Context)] : null;
        var activity = Source.StartActivity("busflow.transition", ActivityKind.Internal, parent, links: links);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("busflow.pipeline.id", state.CorrelationId);
            activity.SetTag("busflow.definition", (message as StartPipeline)?.Definition ?? state.Definition);
            activity.SetTag("busflow.message", message.GetType().Name);
            TagTenant(activity, (message as StartPipeline)?.Tags ?? state.Tags);
        }

        return activity;
    }

    /// <summary>
    /// A step run, under the transition that dispatched it (a co-located step runs in the flow of
    /// the step before it, and would otherwise nest under that one); the current activity (the
    /// command's receive) is linked when it is another.
    /// </summary>
    internal static Activity? Step(ExecuteStep command)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var current = Activity.Current;
        var parent = Recorded(command.TraceParent) is { } dispatched ? dispatched : current?.Context ?? default;
        ActivityLink[]? links = current is not null && current.Context != parent ? [new ActivityLink(current.Context)] : null;
        var activity = Source.StartActivity("busflow.step", ActivityKind.Internal, parent, links: links);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("busflow.pipeline.id", command.PipelineId);
            activity.SetTag("busflow.definition", command.Definition);
            activity.SetTag("busflow.step", command.StepName);
            activity.SetTag("busflow.attempt", command.Attempt);
            activity.SetTag("busflow.worker", command.Worker);
            if (command.ItemIndex is { } item)
            {
                activity.SetTag("busflow.item", item);
            }

            TagTenant(activity, command.Tags);
        }

        return activity;
    }

    /// <summary>An event confirmed by the broker (or, at an edge, pushed to <paramref name="subscribers"/>), from <paramref name="started"/> until now.</summary>
    public static void EventHandled(string name, PipelineEvent e, DateTimeOffset started, int? subscribers = null)
    {
        if (!Source.HasListeners() || Recorded(e.TraceParent) is not { } parent)
        {
            return;
        }

        using var activity = Source.StartActivity(name, name == Deliver ? ActivityKind.Producer : ActivityKind.Internal, parent, startTime: started);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("busflow.pipeline.id", e.PipelineId);
            activity.SetTag("busflow.definition", e.Definition);
            activity.SetTag("busflow.event.type", e.EventType);
            activity.SetTag("busflow.event.seq", e.Seq);
            if (subscribers is { } count)
            {
                activity.SetTag("busflow.subscribers", count);
            }

            TagTenant(activity, e.Tags);
        }
    }

    /// <summary>The span of an event's delivery to the bus.</summary>
    public const string Deliver = "busflow.deliver";

    /// <summary>The span of an event's push to an edge's subscribers.</summary>
    public const string Push = "busflow.push";

    /// <summary>
    /// The current activity's W3C <c>traceparent</c> when it is recorded (a tracer samples it), for a
    /// start request; null otherwise (ASP.NET Core keeps an activity per request for its logs even
    /// when nothing traces, and a context no tracer recorded would leave the pipeline untraced).
    /// </summary>
    public static string? Current => Activity.Current is { Recorded: true, IdFormat: ActivityIdFormat.W3C } current ? current.Id : null;

    /// <summary>The activity's <c>traceparent</c> when it is recorded in W3C form (what a pipeline and its messages keep).</summary>
    internal static string? TraceParentOf(Activity? activity) => activity is { Recorded: true, IdFormat: ActivityIdFormat.W3C } ? activity.Id : null;

    private static ActivityContext Parent(string? traceParent)
    {
        var current = Activity.Current;
        if (Recorded(traceParent) is not { } dispatched)
        {
            return current?.Context ?? default;
        }

        return current is not null && current.TraceId == dispatched.TraceId ? current.Context : dispatched;
    }

    /// <summary>The context a <c>traceparent</c> names, when it parses and a tracer recorded it; else null.</summary>
    private static ActivityContext? Recorded(string? traceParent) =>
        traceParent is not null && ActivityContext.TryParse(traceParent, null, out var context) && (context.TraceFlags & ActivityTraceFlags.Recorded) != 0 ? context : null;

    private static void TagTenant(Activity activity, IReadOnlyDictionary<string, string> tags)
    {
        if (tags.TryGetValue(PipelineTags.Tenant, out var tenant))
        {
            activity.SetTag("busflow.tenant", tenant);
        }
    }
}
