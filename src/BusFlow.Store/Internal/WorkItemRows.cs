using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store.Internal;

/// <summary>
/// A map step's items, kept one row each in <c>busflow_work_items</c> rather than in the pipeline
/// row's step tree, which every transition rewrites: with the items inside it, each item's outcome
/// rewrote every item, and a map of N items cost N^2 (docs/performance.md). The step tree records
/// how many rows a step has (<see cref="StoredStep.ItemRows"/>); a transition writes the rows of the
/// items it changed, told apart by reference from the items as stored (the engine copies an item
/// before it changes it); loading a pipeline fills the items back in with one query. Task and child
/// steps keep their one item in the tree.
/// </summary>
internal static class WorkItemRows
{
    private static readonly JsonSerializerOptions JsonOptions = PipelineEventJson.Options;

    /// <summary>True when the step's items live in rows: a map step's (indexed) items, loaded or not.</summary>
    public static bool InRows(List<WorkItem> items) => items is StoredItems || (items.Count > 0 && items[0].Index is not null);

    /// <summary>The step tree as the column stores it: map steps with their row count instead of their items.</summary>
    public static string SerializeSteps(List<StepRun> steps) =>
        JsonSerializer.Serialize(steps.Select(s => new StoredStep
        {
            Name = s.Name,
            Status = s.Status,
            StartedAt = s.StartedAt,
            FinishedAt = s.FinishedAt,
            Result = s.Result,
            Error = s.Error,
            Items = InRows(s.Items) ? [] : s.Items,
            ItemRows = s.Items switch
            {
                StoredItems { Loaded: false } unloaded => unloaded.Expected,
                var items when InRows(items) => items.Count,
                _ => null,
            },
        }).ToList(), JsonOptions);

    /// <summary>The step tree read back; a map step's items are left to <see cref="FillAsync"/> (older rows hold them inline, and keep them until written).</summary>
    public static List<StepRun> DeserializeSteps(string json) =>
        [.. JsonSerializer.Deserialize<List<StoredStep>>(json, JsonOptions)!.Select(s => new StepRun
        {
            Name = s.Name,
            Status = s.Status,
            StartedAt = s.StartedAt,
            FinishedAt = s.FinishedAt,
            Result = s.Result,
            Error = s.Error,
            Items = s.ItemRows is { } rows ? StoredItems.Unloaded(rows) : s.Items,
        })];

    /// <summary>
    /// Adds to <paramref name="db"/> the rows of the map items that the pipelines it is about to
    /// write changed: new items inserted, changed ones updated, the rest left alone. Called before a
    /// group's plain writes and by SaveChanges.
    /// </summary>
    public static void Track(BusFlowDbContext db)
    {
        var writing = db.ChangeTracker.Entries<PipelineState>()
            .Where(e => e.State is EntityState.Added or EntityState.Modified)
            .Select(e => e.Entity)
            .ToList();
        foreach (var state in writing)
        {
            for (var s = 0; s < state.Steps.Count; s++)
            {
                var items = state.Steps[s].Items;
                if (!InRows(items) || items is StoredItems { Loaded: false })
                {
                    continue;
                }

                var stored = (items as StoredItems)?.Stored;
                for (var i = 0; i < items.Count; i++)
                {
                    var was = stored is not null && i < stored.Length ? stored[i] : null;
                    if (ReferenceEquals(was, items[i]))
                    {
                        continue;
                    }

                    var row = new WorkItemRecord { PipelineId = state.CorrelationId, Step = s, ItemIndex = i, Body = JsonSerializer.Serialize(items[i], JsonOptions) };
                    if (was is null)
                    {
                        db.WorkItems.Add(row);
                    }
                    else
                    {
                        db.WorkItems.Update(row);
                    }
                }
            }
        }
    }

    /// <summary>The pipeline just read, with its map items filled in; null when there is none.</summary>
    public static async Task<PipelineState?> FilledAsync(BusFlowDbContext db, PipelineState? state, CancellationToken cancellationToken)
    {
        if (state is not null)
        {
            await FillAsync(db, [state], cancellationToken);
        }

        return state;
    }

    /// <summary>Fills in the map items of <paramref name="states"/> whose rows are not loaded yet, with one query for all of them.</summary>
    public static async Task FillAsync(BusFlowDbContext db, IEnumerable<PipelineState> states, CancellationToken cancellationToken)
    {
        var unloaded = states.Where(s => s.Steps.Any(step => step.Items is StoredItems { Loaded: false })).ToList();
        if (unloaded.Count == 0)
        {
            return;
        }

        var ids = unloaded.Select(s => s.CorrelationId).ToList();
        var rows = (await db.WorkItems.AsNoTracking().Where(r => ids.Contains(r.PipelineId)).ToListAsync(cancellationToken))
            .ToLookup(r => (r.PipelineId, r.Step));
        foreach (var state in unloaded)
        {
            for (var s = 0; s < state.Steps.Count; s++)
            {
                var step = state.Steps[s];
                if (step.Items is not StoredItems { Loaded: false } pending)
                {
                    continue;
                }

                var items = new WorkItem[pending.Expected];
                foreach (var row in rows[(state.CorrelationId, s)])
                {
                    if (row.ItemIndex >= 0 && row.ItemIndex < items.Length)
                    {
                        items[row.ItemIndex] = JsonSerializer.Deserialize<WorkItem>(row.Body, JsonOptions)!;
                    }
                }

                if (Array.IndexOf(items, null) is var missing and >= 0)
                {
                    throw new InvalidOperationException(
                        $"Pipeline {state.CorrelationId}'s step '{step.Name}' has {items.Length} map items, but busflow_work_items has no row for item {missing}: the store was changed outside BusFlow.");
                }

                step.Items = StoredItems.Of(items);
            }
        }
    }
}

/// <summary>
/// A map step's items as the store holds them: <see cref="Stored"/> are the items as last loaded
/// or committed (the list's own entries start as the same objects), or null while not loaded.
/// </summary>
internal sealed class StoredItems : List<WorkItem>
{
    private StoredItems(int expected) => Expected = expected;

    private StoredItems(WorkItem[] items)
        : base(items)
    {
        Stored = items;
        Expected = items.Length;
    }

    /// <summary>How many rows the step has in the store.</summary>
    public int Expected { get; }

    public WorkItem[]? Stored { get; }

    public bool Loaded => Stored is not null;

    public static StoredItems Unloaded(int rows) => new(rows);

    /// <summary>Items as stored: <paramref name="items"/> is kept as the stored form, so it must not change.</summary>
    public static StoredItems Of(WorkItem[] items) => new(items);
}

/// <summary>A step as the pipeline row's step tree stores it (a <see cref="StepRun"/> whose map items are rows).</summary>
internal sealed class StoredStep
{
    public string Name { get; set; } = "";

    public StepStatus Status { get; set; }

    public DateTimeOffset? StartedAt { get; set; }

    public DateTimeOffset? FinishedAt { get; set; }

    public JsonElement? Result { get; set; }

    public Contracts.StepError? Error { get; set; }

    public List<WorkItem> Items { get; set; } = [];

    /// <summary>For a map step: how many item rows it has; its <see cref="Items"/> are then empty.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? ItemRows { get; set; }
}
