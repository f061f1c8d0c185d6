namespace BusFlow;

/// <summary>
/// The watchdog that ends a process whose start has not finished within <c>BusFlow:StartTimeout</c>
/// (registered by <c>AddBusFlow</c> on an <c>IServiceCollection</c>). Work in a start that must not be
/// cut off however long it takes, such as a store's migration holding the database's migration lock,
/// runs inside <see cref="Hold"/>.
/// </summary>
public interface IStartWatchdog
{
    /// <summary>Stops the count until the returned handle is disposed; then it starts again from the whole timeout.</summary>
    IDisposable Hold();
}
