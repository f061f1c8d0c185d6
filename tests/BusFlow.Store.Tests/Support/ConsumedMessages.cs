using MassTransit;

namespace BusFlow.Store.Tests.Support;

/// <summary>Counts the messages of one type that consumers finished with (handled or dropped as copies, not faulted).</summary>
public sealed class ConsumedMessages<TMessage> : IConsumeObserver
    where TMessage : class
{
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public Task PreConsume<T>(ConsumeContext<T> context)
        where T : class => Task.CompletedTask;

    public Task PostConsume<T>(ConsumeContext<T> context)
        where T : class
    {
        if (context.Message is TMessage)
        {
            Interlocked.Increment(ref _count);
        }

        return Task.CompletedTask;
    }

    public Task ConsumeFault<T>(ConsumeContext<T> context, Exception exception)
        where T : class => Task.CompletedTask;
}
