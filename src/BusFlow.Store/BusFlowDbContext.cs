using BusFlow.Store.Internal;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store;

/// <summary>
/// BusFlow's database: pipeline saga state (a map's items in rows of their own), the event log, the outbox and inbox, idempotency keys,
/// suspensions and leases. Provider-neutral; provider differences live in <see cref="StoreProvider"/>.
/// </summary>
public sealed class BusFlowDbContext : DbContext
{
    public BusFlowDbContext(DbContextOptions<BusFlowDbContext> options)
        : base(options)
    {
        // A pipeline saved through SaveChanges (a saga's first insert) writes its map's item rows with it.
        SavingChanges += (_, _) => WorkItemRows.Track(this);
    }

    public DbSet<PipelineState> Pipelines => Set<PipelineState>();

    public DbSet<WorkItemRecord> WorkItems => Set<WorkItemRecord>();

    public DbSet<PipelineEventRecord> Events => Set<PipelineEventRecord>();

    public DbSet<OutboxMessageRecord> Outbox => Set<OutboxMessageRecord>();

    public DbSet<InboxRecord> Inbox => Set<InboxRecord>();

    public DbSet<IdempotencyKeyRecord> IdempotencyKeys => Set<IdempotencyKeyRecord>();

    public DbSet<SuspensionRecord> Suspensions => Set<SuspensionRecord>();

    public DbSet<StoreLease> Leases => Set<StoreLease>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.ApplyConfiguration(new PipelineStateMap());

        modelBuilder.Entity<WorkItemRecord>(e =>
        {
            e.ToTable("busflow_work_items");
            e.HasKey(x => new { x.PipelineId, x.Step, x.ItemIndex });
        });

        modelBuilder.Entity<PipelineEventRecord>(e =>
        {
            e.ToTable("busflow_events");
            e.HasKey(x => x.Id);
            e.HasIndex(x => new { x.PipelineId, x.Seq }).IsUnique();
            e.HasIndex(x => x.Position).IsUnique();
            e.Property(x => x.Type).HasMaxLength(64);
            e.HasIndex(x => new { x.Tenant, x.Position });
        });

        modelBuilder.Entity<OutboxMessageRecord>(e =>
        {
            e.ToTable("busflow_outbox");
            e.HasKey(x => x.Id);
            e.HasIndex(x => x.DeliveredAt);
            e.HasIndex(x => x.PipelineId);
            e.Property(x => x.MessageType).HasMaxLength(256);
            e.Property(x => x.Destination).HasMaxLength(512);
        });

        modelBuilder.Entity<InboxRecord>(e =>
        {
            e.ToTable("busflow_inbox");
            e.HasKey(x => new { x.MessageId, x.Consumer });
            e.Property(x => x.Consumer).HasMaxLength(256);
            e.HasIndex(x => x.ReceivedAt);
        });

        modelBuilder.Entity<IdempotencyKeyRecord>(e =>
        {
            e.ToTable("busflow_idempotency_keys");
            e.HasKey(x => new { x.Scope, x.Key });
            e.Property(x => x.Scope).HasMaxLength(64);
            e.Property(x => x.Key).HasMaxLength(256);
            e.Property(x => x.RequestHash).HasMaxLength(128);
        });

        modelBuilder.Entity<SuspensionRecord>(e =>
        {
            e.ToTable("busflow_suspensions");
            e.HasKey(x => x.SuspendId);
            e.HasIndex(x => x.PipelineId);
            e.Property(x => x.StepName).HasMaxLength(200);
        });

        modelBuilder.Entity<StoreLease>(e =>
        {
            e.ToTable("busflow_leases");
            e.HasKey(x => x.Name);
            e.Property(x => x.Name).HasMaxLength(64);
            e.Property(x => x.Owner).HasMaxLength(200);
            e.HasData(
                new StoreLease { Name = OutboxDelivery.LeaseName, ExpiresAt = DateTimeOffset.UnixEpoch, LastPosition = 0, DeliveredUpTo = 0 },
                new StoreLease { Name = OutboxDelivery.PositionCounter, ExpiresAt = DateTimeOffset.UnixEpoch, LastPosition = 0, DeliveredUpTo = 0 });
        });
    }

    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        StoreProvider.ConfigureConventions(Database.ProviderName, configurationBuilder);
    }
}
