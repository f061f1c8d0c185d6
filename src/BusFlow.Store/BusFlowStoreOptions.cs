namespace BusFlow.Store;

/// <summary>Settings of the <c>BusFlow:Store</c> configuration section.</summary>
public sealed class BusFlowStoreOptions
{
    public const string Section = "BusFlow:Store";

    /// <summary><c>Sqlite</c> (default, a local file) or <c>Postgres</c>.</summary>
    public StoreProviderKind Provider { get; set; } = StoreProviderKind.Sqlite;

    /// <summary>The provider's connection string; SQLite defaults to a file beside the app.</summary>
    public string ConnectionString { get; set; } = "Data Source=busflow.db";

    /// <summary>Apply pending migrations at start. Null means the provider's default: on for SQLite, off for PostgreSQL.</summary>
    public bool? ApplyMigrations { get; set; }

    /// <summary>How long events, outbox and inbox rows of a finished pipeline are kept. Null keeps them forever.</summary>
    public TimeSpan? Retention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often the retention job runs.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long an inbox row keeps a redelivered step command from running twice.</summary>
    public TimeSpan InboxWindow { get; set; } = TimeSpan.FromDays(1);

    /// <summary>Rows the outbox delivery reads and publishes per round.</summary>
    public int DeliveryBatchSize { get; set; } = 500;

    /// <summary>How often the outbox delivery looks for rows committed by other processes (commits in this process wake it at once).</summary>
    public TimeSpan DeliveryPollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How many pipelines' rows are published at once (each pipeline's rows in order).</summary>
    public int DeliveryParallelism { get; set; } = 32;

    internal bool ShouldMigrate => ApplyMigrations ?? Provider == StoreProviderKind.Sqlite;
}
