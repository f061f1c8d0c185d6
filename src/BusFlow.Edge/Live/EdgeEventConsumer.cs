using BusFlow.Contracts;
using MassTransit;

namespace BusFlow.Edge.Live;

/// <summary>Receives every pipeline event on this edge node's own queue and passes it to the live feed.</summary>
internal sealed class EdgeEventConsumer(LiveFeed feed) : PipelineEventsConsumer
{
    protected override Task ConsumeEvent(PipelineEvent pipelineEvent, ConsumeContext context) =>
        feed.PostAsync(pipelineEvent, context.CancellationToken).AsTask();
}
