using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.IntegrationTests.Support;

/// <summary>Reads event-log payloads the way clients do (camelCase, with the <c>type</c> discriminator).</summary>
public static class BusFlowJson
{
    public static PipelineEvent Event(string payload) => JsonSerializer.Deserialize<PipelineEvent>(payload, JsonSerializerOptions.Web)!;
}
