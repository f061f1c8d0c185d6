namespace BusFlow.Internal;

/// <summary>A step worker of this process: its queue name comes from <see cref="Name"/>.</summary>
internal sealed record WorkerRegistration(string Name, int Concurrency, Func<IServiceProvider, StepContext, Task<StepResult>> Invoke)
{
    public const int DefaultConcurrency = 32;
}
