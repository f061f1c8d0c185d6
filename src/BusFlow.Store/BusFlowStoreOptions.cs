namespace BusFlow.Store;

/// <summary>Settings of the <c>BusFlow:Store</c> configuration section.</summary>
public sealed class BusFlowStoreOptions
{
    public const string Section = "BusFlow:Store";

    /// <summary><c>Sqlite</c> (default, a local file), <c>Postgres</c> or <c>SqlServer</c>.</summary>
    public StoreProviderKind Provider { get; set; } = StoreProviderKind.Sqlite;

    /// <summary>The provider's connection string; SQLite defaults to a file beside the app.</summary>
    public string ConnectionString { get; set; } = "Data Source=busflow.db";

    /// <summary>Apply pending migrations at start. Null means the provider's default: on for SQLite, off for the servers (PostgreSQL, SQL Server).</summary>
    public bool? ApplyMigrations { get; set; }

    /// <summary>
    /// SQLite only: wait for the disk on every commit. Off by default: commits survive a process
    /// crash either way, and only an operating-system crash or power cut can lose the last ones.
    /// </summary>
    public bool SqliteFullSync { get; set; }

    /// <summary>How long events, outbox and inbox rows of a finished pipeline are kept. Null keeps them forever.</summary>
    public TimeSpan? Retention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often the retention job runs.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long an inbox row keeps a redelivered step command from running twice.</summary>
    public TimeSpan InboxWindow { get; set; } = TimeSpan.FromDays(1);

    /// <summary>Event rows the outbox delivery positions (and hands to its publishers) per round.</summary>
    public int DeliveryBatchSize { get; set; } = 2000;

    /// <summary>How often the outbox delivery looks for rows committed by other processes (commits in this process wake it at once).</summary>
    public TimeSpan DeliveryPollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Outbox messages are sent right after their commit by the committing process; the delivery
    /// sends those still undelivered once they are older than this (the sender failed or died).
    /// </summary>
    public TimeSpan DirectSendGrace { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long one publish or send may wait for the broker's confirmation before it counts as
    /// failed and is tried again (the same MessageId, so receivers de-duplicate a late original).
    /// RabbitMQ.Client 7 can leave a publish waiting forever when the broker restarts under it
    /// (rabbitmq-dotnet-client#1930, reported against 7.2.1 with the client's automatic recovery,
    /// still open with 7.2.2). Checked again with MassTransit 8.5.12 and 7.2.2 (session 17): 14 broker
    /// restarts under 32 publishing loops, 1.73 million publishes, none left pending; but MassTransit
    /// reconnects through its own supervisor with the client's recovery off, the path #1930 needs,
    /// and a network cut without a close was not tried. The bound stays: it costs nothing when the
    /// broker answers, and without it one lost confirmation would stall the delivery for good.
    /// </summary>
    public TimeSpan BrokerConfirmTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How many publishers ("lanes") run at once; a pipeline's events always take the same lane, in order.</summary>
    public int DeliveryParallelism { get; set; } = 32;

    /// <summary>
    /// <c>Batched</c> (default): one <see cref="Contracts.PipelineEventBatch"/> message per lane and
    /// round, many times fewer broker messages. Every <c>PipelineEventsConsumer</c> (the web edge
    /// included) takes the batches, and a consumer of single events (<c>IConsumer&lt;StepCompleted&gt;</c>)
    /// gets them split, one by one and in order, on any endpoint of a process that calls
    /// <c>ConfigureBusFlowEndpoints</c> or <c>SplitPipelineEventBatches</c>. <c>Individual</c>: one bus
    /// message per event, for subscribers in processes that can do neither.
    /// </summary>
    public EventPublishMode EventPublishing { get; set; } = EventPublishMode.Batched;

    /// <summary>
    /// Run a step whose worker is registered in the saga's own process right there, when the worker
    /// has a free slot, and fold its outcome into the pipeline's next transition: no broker round
    /// trip, no worker transaction, no report message (default on). Off sends every step command
    /// through the broker to the worker's queue. Either way the command is durable before the step
    /// runs, and a step cut short by a crash runs again on the ordinary path.
    /// </summary>
    public bool ColocateSteps { get; set; } = true;

    /// <summary>
    /// Keep the state of each running pipeline as this process last committed it, so that its next
    /// transition here does not read the row back (default on). Correct with several saga processes
    /// on one store: a state another process changed since fails its write on the version check and
    /// is read again. Off reads every transition's state from the store.
    /// </summary>
    public bool CachePipelineStates { get; set; } = true;

    /// <summary>The most events one <see cref="Contracts.PipelineEventBatch"/> carries.</summary>
    public int MaxEventsPerBatch { get; set; } = 256;

    internal bool ShouldMigrate => ApplyMigrations ?? Dialect.MigratesByDefault;

    /// <summary>The chosen database's statements and behaviours.</summary>
    internal Dialects.StoreDialect Dialect => Dialects.StoreDialect.For(Provider);
}

/// <summary>How recorded events travel to the bus.</summary>
public enum EventPublishMode
{
    /// <summary>One message per event, of the event's own type.</summary>
    Individual,

    /// <summary>One <see cref="Contracts.PipelineEventBatch"/> per lane and round.</summary>
    Batched,
}
