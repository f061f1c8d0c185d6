namespace BusFlow.Internal;

/// <summary>Queue names BusFlow uses on the bus; they are part of the wire contract between processes.</summary>
internal static class QueueNames
{
    public const string Saga = "busflow-pipeline";

    public const string NodePrefix = "busflow-node";

    public static string Worker(string worker) => "busflow-step-" + worker;

    public static Uri WorkerAddress(string worker) => new("queue:" + Worker(worker));
}
