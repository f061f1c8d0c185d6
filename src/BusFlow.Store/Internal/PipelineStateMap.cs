using System.Runtime.InteropServices;
using System.Text.Json;
using BusFlow.Contracts;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace BusFlow.Store.Internal;

/// <summary>The saga state's mapping: scalar columns to query by, the step tree as one JSON column (a map step's items apart, in <see cref="WorkItemRows"/>).</summary>
internal sealed class PipelineStateMap : IEntityTypeConfiguration<PipelineState>
{
    internal static readonly JsonSerializerOptions JsonOptions = PipelineEventJson.Options;

    public void Configure(EntityTypeBuilder<PipelineState> e)
    {
        e.ToTable("busflow_pipelines");
        e.HasKey(x => x.CorrelationId);
        e.Property(x => x.CorrelationId).HasColumnName("PipelineId");
        e.Property(x => x.Version).IsConcurrencyToken();
        e.Property(x => x.CurrentState).HasMaxLength(64);
        e.Property(x => x.Definition).HasMaxLength(200);
        e.Property(x => x.DefinitionVersion).HasMaxLength(64).HasDefaultValue("");
        e.Property(x => x.TraceParent).HasMaxLength(64);
        // Which definition versions still have running pipelines (PipelineStore.RunningVersionsAsync), to drain one.
        e.HasIndex(x => new { x.Status, x.Definition, x.DefinitionVersion });
        e.Property(x => x.Status).HasConversion<string>().HasMaxLength(16);
        e.Property(x => x.ParentStepName).HasMaxLength(200);
        e.Property(x => x.FailedStep).HasMaxLength(200);
        e.HasIndex(x => x.NextDeadline);
        e.HasIndex(x => x.FinishedAt);
        e.HasIndex(x => x.ParentPipelineId);
        e.HasIndex(x => new { x.Tenant, x.StartedAt });
        // The step tree changes in nearly every transition: called changed whenever loaded, which
        // spares EF a deep copy when the row is loaded and two serialisations to compare at save.
        // A map step's items are rows of their own (WorkItemRows), so the tree stays small.
        e.Property(x => x.Steps).HasConversion(
            v => WorkItemRows.SerializeSteps(v),
            v => WorkItemRows.DeserializeSteps(v),
            new ValueComparer<List<StepRun>>((a, b) => false, v => 0, v => v));
        // The rest are set once (input and tags at the start) or replaced whole (the error), and
        // compared for what they hold, so a transition writes them only when they changed: a
        // pipeline with a large input does not write it again in every transition.
        Json(e.Property(x => x.Tags), new ValueComparer<Dictionary<string, string>>((a, b) => SameTags(a, b), v => v.Count, v => new Dictionary<string, string>(v, StringComparer.Ordinal)));
        Json(e.Property(x => x.Input), new ValueComparer<JsonElement?>((a, b) => SameJson(a, b), v => 0, v => v));
        Json(e.Property(x => x.Error), new ValueComparer<StepError?>((a, b) => a == b, v => v == null ? 0 : v.GetHashCode(), v => v));
    }

    private static bool SameTags(Dictionary<string, string>? a, Dictionary<string, string>? b)
    {
        if (a is null || b is null)
        {
            return a == b;
        }

        if (a.Count != b.Count)
        {
            return false;
        }

        foreach (var (key, value) in a)
        {
            if (!b.TryGetValue(key, out var other) || !string.Equals(value, other, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The same JSON text; a JSON value is immutable, so one loaded and kept compares equal at once (same bytes).</summary>
    private static bool SameJson(JsonElement? a, JsonElement? b) =>
        a is { } x && b is { } y
            ? JsonMarshal.GetRawUtf8Value(x).SequenceEqual(JsonMarshal.GetRawUtf8Value(y))
            : a.HasValue == b.HasValue;

    private static void Json<T>(PropertyBuilder<T> property, ValueComparer<T> comparer) =>
        property.HasConversion(
            v => JsonSerializer.Serialize(v, JsonOptions),
            v => JsonSerializer.Deserialize<T>(v, JsonOptions)!,
            comparer);

    /// <summary>Serialises an event as clients and the log see it: through its base type, with <c>type</c>.</summary>
    public static string Serialize(PipelineEvent e) => PipelineEventJson.Serialize(e);

    /// <summary>Reads a log row back as its event with the row's position; null when this version cannot read it.</summary>
    public static PipelineEvent? Read(PipelineEventRecord row) =>
        PipelineEventJson.TryDeserialize(row.Payload) is { } e ? e with { Position = row.Position ?? 0 } : null;

    /// <summary>
    /// A positioned row's event: the one it was written from (<see cref="PipelineEventRecord.Decided"/>)
    /// with the row's position, else read back from its payload; null when this version cannot read it.
    /// </summary>
    public static PipelineEvent? Positioned(PipelineEventRecord row) => row.Decided switch
    {
        { } decided when decided.Position == row.Position => decided,
        { } decided => decided with { Position = row.Position!.Value },
        null => Read(row),
    };
}
