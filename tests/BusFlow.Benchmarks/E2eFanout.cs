namespace BusFlow.Benchmarks;

public static class E2eFanout
{
    public static Task Run(E2eSettings settings) => Task.CompletedTask;
}
