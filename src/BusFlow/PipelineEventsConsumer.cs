using BusFlow.Contracts;
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
    public Task Consume(ConsumeContext<PipelineStarted> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<StepStarted> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<StepProgress> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<StepCompleted> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<StepFailed> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<StepSuspended> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<PipelineCompleted> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<PipelineFailed> context) => ConsumeEvent(context.Message, context);

    public Task Consume(ConsumeContext<PipelineCancelled> context) => ConsumeEvent(context.Message, context);

    /// <summary>Events the store published in batches arrive one by one, in order.</summary>
    public async Task Consume(ConsumeContext<PipelineEventBatch> context)
    {
        foreach (var pipelineEvent in context.Message.Events)
        {
            await ConsumeEvent(pipelineEvent, context);
        }
    }

    /// <summary>Handles one event, whatever its type.</summary>
    protected abstract Task ConsumeEvent(PipelineEvent pipelineEvent, ConsumeContext context);
}
