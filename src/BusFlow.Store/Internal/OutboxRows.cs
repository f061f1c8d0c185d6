using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Internal;
using MassTransit;

namespace BusFlow.Store.Internal;

/// <summary>Turns outgoing messages into outbox rows and back; only BusFlow's own message types are accepted back.</summary>
internal static class OutboxRows
{
    private static readonly Dictionary<string, Type> KnownTypes = typeof(StartPipeline).Assembly.GetExportedTypes()
        .Concat([typeof(WakePipeline), typeof(ChildPipelineFinished)])
        .Where(t => t is { IsClass: true, IsAbstract: false })
        .ToDictionary(t => t.FullName!, StringComparer.Ordinal);

    public static OutboxMessageRecord Create(object message, Uri? destination, Guid pipelineId, DateTimeOffset now) => new()
    {
        MessageId = NewId.NextGuid(),
        PipelineId = pipelineId,
        Destination = destination?.ToString(),
        MessageType = message.GetType().FullName!,
        Body = JsonSerializer.Serialize(message, message.GetType(), PipelineStateMap.JsonOptions),
        CreatedAt = now,
    };

    public static (object Message, Type Type)? Read(OutboxMessageRecord row)
    {
        if (!KnownTypes.TryGetValue(row.MessageType, out var type))
        {
            return null;
        }

        return JsonSerializer.Deserialize(row.Body, type, PipelineStateMap.JsonOptions) is { } message ? (message, type) : null;
    }
}
