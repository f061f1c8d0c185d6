using BusFlow.Contracts;
using BusFlow.Internal;
using MassTransit;

namespace BusFlow;

/// <summary>
/// A bus subscriber to every pipeline event type, for services that watch pipelines over the bus:
/// register a subclass with <c>AddConsumer</c> and each event arrives at <see cref="ConsumeEvent"/>.
/// Events arrive at least once; de-duplicate by (pipelineId, seq).
/// </summary>
public abstract class PipelineEventsConsumer :
    IConsumer<PipelineStarted>,
    IConsumer<StepStarted>,
    IConsumer<StepProgress>,
    IConsumer<StepCompleted>,
    IConsumer<StepFailed>,
    IConsumer<StepSuspended>,
    IConsumer<PipelineCompleted>,
    IConsumer<PipelineFailed>,
    IConsumer<PipelineCancelled>,
    IConsumer<PipelineEventBatch>
{
    public Task Consume(ConsumeContext<PipelineStarted> context) => Single(context);

    public Task Consume(ConsumeContext<StepStarted> context) => Single(context);

    public Task Consume(ConsumeContext<StepProgress> context) => Single(context);

    public Task Consume(ConsumeContext<StepCompleted> context) => Single(context);

    public Task Consume(ConsumeContext<StepFailed> context) => Single(context);

    public Task Consume(ConsumeContext<StepSuspended> context) => Single(context);

    public Task Consume(ConsumeContext<PipelineCompleted> context) => Single(context);

    public Task Consume(ConsumeContext<PipelineFailed> context) => Single(context);

    public Task Consume(ConsumeContext<PipelineCancelled> context) => Single(context);

    /// <summary>Events the store published in batches arrive one by one, in order.</summary>
    public async Task Consume(ConsumeContext<PipelineEventBatch> context)
    {
        foreach (var pipelineEvent in context.Message.Events)
        {
            await ConsumeEvent(pipelineEvent, context);
        }
    }

    /// <summary>
    /// An event of a batch split for the endpoint's single-event consumers was already handed to
    /// this consumer with its batch.
    /// </summary>
    private Task Single<T>(ConsumeContext<T> context)
        where T : PipelineEvent =>
        context.TryGetPayload<SplitEventContext>(out _) ? Task.CompletedTask : ConsumeEvent(context.Message, context);

    /// <summary>Handles one event, whatever its type.</summary>
    protected abstract Task ConsumeEvent(PipelineEvent pipelineEvent, ConsumeContext context);
}
