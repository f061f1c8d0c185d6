using System.Globalization;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Leaves a saga message this process cannot decide (it lacks the pipeline's definition version,
/// <see cref="DefinitionUnavailableException"/>) to a process that can: the message goes back to the
/// saga's queue, where any saga process may take it, after a pause so that a process alone with it
/// does not spin. It carries when it was first left, and once it has waited
/// <see cref="BusFlowRoles.DefinitionWait"/> the process that takes it decides it anyway, which fails
/// the pipeline with <c>unknown_version</c> (<see cref="PipelineDecider"/>). In front of the
/// partitioner, so that the pause does not hold up the other pipelines of its partition.
/// </summary>
internal sealed partial class DefinitionHandOff<TMessage>(BusFlowRoles roles, TimeProvider time, SendAddresses addresses, ILogger logger) : IFilter<ConsumeContext<TMessage>>
    where TMessage : class
{
    /// <summary>The header with the time the message was first left to another process.</summary>
    public const string SinceHeader = "BusFlow-Definition-Wait-Since";

    /// <summary>The pause before a message goes back to the queue.</summary>
    public static readonly TimeSpan Pause = TimeSpan.FromSeconds(1);

    public async Task Send(ConsumeContext<TMessage> context, IPipe<ConsumeContext<TMessage>> next)
    {
        var now = time.GetUtcNow();
        var since = context.Headers.Get<string>(SinceHeader) is { } text && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var first) ? first : now;
        if (now - since >= roles.DefinitionWait)
        {
            context.GetOrAddPayload(() => DefinitionWaitOver.Instance);
        }

        try
        {
            await next.Send(context);
        }
        catch (Exception ex) when (Unavailable(ex) is { } unavailable)
        {
            var left = roles.DefinitionWait - (now - since);
            if (since == now)
            {
                LogLeft(logger, unavailable.Message, roles.DefinitionWait);
            }

            try
            {
                await Task.Delay(left < Pause ? left : Pause, time, context.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                // Stopping: hand it on now rather than give it back unfinished (the in-memory
                // transport would lose it, and the first hand-off's time would be forgotten).
            }

            var endpoint = await addresses.GetSendEndpointAsync(context, new Uri("queue:" + QueueNames.Saga), CancellationToken.None);
            await endpoint.Send(context.Message, Pipe.Execute<SendContext<TMessage>>(send =>
            {
                send.MessageId = context.MessageId;
                send.CorrelationId = context.CorrelationId;
                send.ConversationId = context.ConversationId;
                send.InitiatorId = context.InitiatorId;
                send.Headers.Set(SinceHeader, since.ToString("O", CultureInfo.InvariantCulture));
            }), CancellationToken.None);
        }
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("busflow-definition-hand-off");

    private static DefinitionUnavailableException? Unavailable(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex is DefinitionUnavailableException unavailable)
            {
                return unavailable;
            }
        }

        return null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Reason} The message goes back to the saga's queue for a process that has it, for up to {Wait}.")]
    private static partial void LogLeft(ILogger logger, string reason, TimeSpan wait);
}

/// <summary>Set on a saga message that has waited long enough for a process with its pipeline's definition version.</summary>
internal sealed class DefinitionWaitOver
{
    public static readonly DefinitionWaitOver Instance = new();
}
