using MassTransit;

namespace BusFlow.Store.Internal;

/// <summary>
/// Tells a message that may be a copy of one handled before from one that cannot be, so that only
/// the former costs an inbox look-up. Copies come from three places: the broker redelivering (the
/// transport's redelivered flag), MassTransit's retry and redelivery (their counters), and the
/// outbox sending a stored row again (<see cref="OutboxDelivery"/> after
/// <see cref="BusFlowStoreOptions.DirectSendGrace"/>, or after an in-memory transport restart),
/// which marks the message with <see cref="ResentHeader"/>. A message sent right after its commit
/// (<see cref="OutboxSender"/>) is the first of its MessageId.
/// </summary>
internal static class MessageCopies
{
    public const string ResentHeader = "BusFlow-Resent";

    public static bool MayBeACopy(ConsumeContext context) =>
        context.ReceiveContext.Redelivered
        || context.GetRedeliveryCount() > 0
        || context.GetRetryAttempt() > 0
        || context.Headers.TryGetHeader(ResentHeader, out _);
}
