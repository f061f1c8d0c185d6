using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using BusFlow.Contracts;
using MassTransit;
using MassTransit.Configuration;
using MassTransit.Context;

namespace BusFlow.Internal;

/// <summary>
/// Lets a bus subscriber written for single events (<c>IConsumer&lt;StepCompleted&gt;</c>, a handler of
/// <c>PipelineEvent</c>) receive every event while the store publishes them in
/// <see cref="PipelineEventBatch"/> messages: an endpoint with such a consumer also takes the batches
/// and passes each event, in order, through its own consume pipe, as if it had arrived alone.
/// </summary>
/// <remarks>
/// The consumers of an endpoint are known only when MassTransit validates it, after the
/// configure callback, so each endpoint gets a specification that listens to its consumers'
/// configuration and decides when the endpoint is built. Consumers derived from
/// <see cref="PipelineEventsConsumer"/> take batches themselves and ignore the split events.
/// </remarks>
internal sealed class PipelineEventBatchSplitter : IEndpointConfigurationObserver
{
    private static readonly ConditionalWeakTable<IReceiveEndpointConfigurator, EndpointEvents> Installed = [];

    public static PipelineEventBatchSplitter Instance { get; } = new();

    public void EndpointConfigured<T>(T configurator)
        where T : IReceiveEndpointConfigurator => Install(configurator);

    /// <summary>Adds the splitting to one endpoint, once however often it is asked.</summary>
    public static void Install(IReceiveEndpointConfigurator configurator)
    {
        // The endpoint's consume pipe is where split events go; every transport's endpoint configuration offers it.
        if (configurator is not IReceiveEndpointConfiguration configuration)
        {
            return;
        }

        lock (Installed)
        {
            if (Installed.TryGetValue(configurator, out _))
            {
                return;
            }

            var events = new EndpointEvents(configuration);
            Installed.Add(configurator, events);
            configurator.ConnectConsumerConfigurationObserver(events);
            configurator.ConnectHandlerConfigurationObserver(events);
            configurator.AddEndpointSpecification(events);
        }
    }

    /// <summary>What one endpoint consumes, and the batch consumer it gets when it needs one.</summary>
    private sealed class EndpointEvents(IReceiveEndpointConfiguration configuration) :
        IConsumerConfigurationObserver,
        IHandlerConfigurationObserver,
        IReceiveEndpointSpecification
    {
        private bool _single;

        public void ConsumerConfigured<TConsumer>(IConsumerConfigurator<TConsumer> configurator)
            where TConsumer : class
        {
        }

        public void ConsumerMessageConfigured<TConsumer, TMessage>(IConsumerMessageConfigurator<TConsumer, TMessage> configurator)
            where TConsumer : class
            where TMessage : class
        {
            if (typeof(PipelineEvent).IsAssignableFrom(typeof(TMessage)) && !typeof(PipelineEventsConsumer).IsAssignableFrom(typeof(TConsumer)))
            {
                _single = true;
            }
        }

        public void HandlerConfigured<TMessage>(IHandlerConfigurator<TMessage> configurator)
            where TMessage : class
        {
            if (typeof(PipelineEvent).IsAssignableFrom(typeof(TMessage)))
            {
                _single = true;
            }
        }

        public IEnumerable<ValidationResult> Validate() => [];

        public void Configure(IReceiveEndpointBuilder builder)
        {
            if (!_single)
            {
                return;
            }

            // One more consumer of the batches beside any of the endpoint's own: consumers of
            // PipelineEventBatch get the batch, consumers of single events get the split events.
            var consumePipe = configuration.ConsumePipe;
            builder.ConnectConsumePipe(Pipe.New<ConsumeContext<PipelineEventBatch>>(p => p.UseExecuteAsync(async context =>
            {
                foreach (var pipelineEvent in context.Message.Events)
                {
                    await consumePipe.Send(new SplitEventContext(context, pipelineEvent));
                }
            })));
        }
    }
}

/// <summary>One event of a batch, presented to an endpoint's consumers as a message of its own.</summary>
internal sealed class SplitEventContext(ConsumeContext batch, PipelineEvent pipelineEvent) : ConsumeContextProxy(batch)
{
    private static readonly ConcurrentDictionary<Type, string[]> MessageTypes = new();

    /// <summary>The id the event has when published alone, so that de-duplication by message id still works.</summary>
    public override Guid? MessageId { get; } = PipelineEventMessageIds.For(pipelineEvent.PipelineId, pipelineEvent.Seq);

    public override IEnumerable<string> SupportedMessageTypes => MessageTypes.GetOrAdd(pipelineEvent.GetType(), static type =>
    {
        var types = new List<string>();
        for (var t = type; t is not null && t != typeof(object); t = t.BaseType)
        {
            types.Add(MessageUrn.ForTypeString(t));
        }

        return [.. types];
    });

    public override bool HasMessageType(Type messageType) => messageType.IsInstanceOfType(pipelineEvent);

    public override bool TryGetMessage<T>(out ConsumeContext<T> consumeContext)
        where T : class
    {
        if (pipelineEvent is T message)
        {
            consumeContext = new MessageConsumeContext<T>(this, message);
            return true;
        }

        consumeContext = null!;
        return false;
    }
}
