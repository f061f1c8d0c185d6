using System.Text.Json;
using BusFlow.Contracts;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace BusFlow.Store.Internal;

/// <summary>The saga state's mapping: scalar columns to query by, the step tree as one JSON column.</summary>
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
        e.Property(x => x.Status).HasConversion<string>().HasMaxLength(16);
        e.Property(x => x.ParentStepName).HasMaxLength(200);
        e.Property(x => x.FailedStep).HasMaxLength(200);
        e.HasIndex(x => x.NextDeadline);
        e.HasIndex(x => x.FinishedAt);
        e.HasIndex(x => x.ParentPipelineId);
        Json(e.Property(x => x.Steps));
        Json(e.Property(x => x.Tags));
        Json(e.Property(x => x.Input));
        Json(e.Property(x => x.Error));
    }

    /// <summary>
    /// A JSON column. Its comparer calls every loaded value changed, so a transition writes the
    /// column without EF taking a deep copy when the row is loaded (a serialise and deserialise of
    /// the step tree) and comparing serialisations at save (two more): the step tree changes in
    /// nearly every transition anyway, and the other JSON columns are small.
    /// </summary>
    private static void Json<T>(PropertyBuilder<T> property) =>
        property.HasConversion(
            v => JsonSerializer.Serialize(v, JsonOptions),
            v => JsonSerializer.Deserialize<T>(v, JsonOptions)!,
            new ValueComparer<T>((a, b) => false, v => 0, v => v));

    /// <summary>Serialises an event as clients and the log see it: through its base type, with <c>type</c>.</summary>
    public static string Serialize(PipelineEvent e) => PipelineEventJson.Serialize(e);

    /// <summary>Reads a log row back as its event with the row's position; null when this version cannot read it.</summary>
    public static PipelineEvent? Read(PipelineEventRecord row) =>
        PipelineEventJson.TryDeserialize(row.Payload) is { } e ? e with { Position = row.Position ?? 0 } : null;
}
