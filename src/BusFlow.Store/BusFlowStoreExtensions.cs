using System.Data.Common;
using BusFlow.Store.Internal;
using MassTransit.Configuration;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace BusFlow.Store;

/// <summary>Runs BusFlow on its EF Core store.</summary>
public static class BusFlowStoreExtensions
{
    /// <summary>
    /// Keeps saga state, the event log, the outbox and the inbox in the database the
    /// <c>BusFlow:Store</c> section names (SQLite by default). Call inside <c>AddBusFlow</c>.
    /// </summary>
    public static BusFlowBuilder UseStore(this BusFlowBuilder busflow, IConfiguration configuration, Action<BusFlowStoreOptions>? configure = null)
    {
        var options = ReadOptions(configuration);
        configure?.Invoke(options);
        return busflow.UseStore(options);
    }

    /// <summary>Keeps BusFlow's state in the store these options describe.</summary>
    public static BusFlowBuilder UseStore(this BusFlowBuilder busflow, BusFlowStoreOptions options)
    {
        var services = busflow.Services;
        services.AddSingleton(options);
        // Every transition, worker report and delivery round takes a context: pooled, a context's
        // internal services and options are set up once, not per transaction (measured in
        // docs/performance.md: a two-row transaction on PostgreSQL 2.4 -> 1.2 ms).
        services.AddPooledDbContextFactory<BusFlowDbContext>(o => StoreProvider.Configure(o, options.Provider, options.ConnectionString, options.SqliteFullSync));
        // Hosted services start in registration order, and the bus (registered by AddMassTransit
        // before this runs) must not consume a message before the schema exists.
        services.Insert(0, ServiceDescriptor.Singleton<IHostedService, StoreStartup>());
        services.AddScoped<StoreSession>();
        services.AddScoped<IPipelineDecisionRecorder, StoreDecisionRecorder>();
        services.AddSingleton<DecisionOutbox>();
        services.AddSingleton<StoreWriteGate>();
        services.AddMetrics();
        services.AddSingleton<StoreMetrics>();
        services.AddSingleton<PipelineStateCache>();
        services.AddSingleton<GroupCommit>();
        services.AddHostedService(sp => sp.GetRequiredService<GroupCommit>());
        services.AddSingleton<ColocatedStepFold>();
        services.AddHostedService(sp => sp.GetRequiredService<ColocatedStepFold>());
        services.AddScoped<IStepReportOutbox, StoreStepReportOutbox>();
        services.AddSingleton<OutboxSignal>();
        services.AddSingleton<OutboxSender>();
        services.AddHostedService(sp => sp.GetRequiredService<OutboxSender>());
        services.AddSingleton<OutboxDelivery>();
        services.AddHostedService(sp => sp.GetRequiredService<OutboxDelivery>());
        if (options.Provider == StoreProviderKind.Sqlite)
        {
            services.AddHostedService<SqliteCheckpointer>();
        }

        services.AddSingleton<RetentionService>();
        services.AddHostedService(sp => sp.GetRequiredService<RetentionService>());
        // The read seams the web edge and other readers depend on (BusFlow's IPipelineQueries,
        // IPipelineEventLog, IIdempotencyKeys), each one instance with its concrete type; an
        // implementation the application registered first stays.
        services.AddSingleton<PipelineEventReader>();
        services.TryAddSingleton<IPipelineEventLog>(sp => sp.GetRequiredService<PipelineEventReader>());
        services.AddSingleton<PipelineStore>();
        services.TryAddSingleton<IPipelineQueries>(sp => sp.GetRequiredService<PipelineStore>());
        services.AddSingleton<IdempotencyKeyStore>();
        services.TryAddSingleton<IIdempotencyKeys>(sp => sp.GetRequiredService<IdempotencyKeyStore>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddHealthChecks().AddCheck<StoreHealthCheck>(StoreHealthCheck.Name, tags: ["ready"]);

        busflow.TreatAsTransient(IsTransient);
        busflow.SagaRepository = saga => saga.Repository(r =>
        {
            r.RegisterSagaRepository<PipelineState, StoreSession, SagaConsumeContextFactory<StoreSession, PipelineState>, StoreSagaRepositoryContextFactory>();
            r.RegisterLoadSagaRepository<PipelineState, StoreSagaRepositoryContextFactory>();
        });
        return busflow;
    }

    /// <summary>
    /// A database that is away or busy is waited for, and a conflict with a concurrent transition
    /// is retried until it applies: a stale <c>Version</c>, or a unique key another transaction
    /// took first (the same pipeline's next seq, the same message's inbox row, the same start).
    /// Each retry re-reads the state, so it either applies on top or finds the work done.
    /// </summary>
    internal static bool IsTransient(Exception exception) => exception switch
    {
        DbUpdateConcurrencyException => true,
        GroupCommitFailedException => true,
        DbUpdateException e when StoreProvider.IsUniqueViolation(e) => true,
        DbUpdateException { InnerException: { } inner } => IsTransient(inner),
        _ when Dialects.StoreDialect.All.Any(d => d.IsTransient(exception)) => true,
        DbException { IsTransient: true } => true,
        TimeoutException => true,
        InvalidOperationException { InnerException: { } inner } => IsTransient(inner),
        _ => false,
    };

    private static BusFlowStoreOptions ReadOptions(IConfiguration configuration)
    {
        var section = configuration.GetSection(BusFlowStoreOptions.Section);
        var provider = section["Provider"];
        if (provider is not null && !Enum.TryParse<StoreProviderKind>(provider, ignoreCase: true, out _))
        {
            throw new InvalidOperationException($"Invalid setting '{BusFlowStoreOptions.Section}:Provider' = '{provider}': use Sqlite, Postgres or SqlServer.");
        }

        var options = new BusFlowStoreOptions();
        try
        {
            section.Bind(options);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException($"Invalid setting in '{BusFlowStoreOptions.Section}': {e.InnerException?.Message ?? e.Message}", e);
        }

        if (string.IsNullOrWhiteSpace(options.ConnectionString))
        {
            throw new InvalidOperationException($"Setting '{BusFlowStoreOptions.Section}:ConnectionString' is empty.");
        }

        if (options.DeliveryBatchSize < 1 || options.DeliveryParallelism < 1 || options.MaxEventsPerBatch < 1)
        {
            throw new InvalidOperationException($"Settings '{BusFlowStoreOptions.Section}:DeliveryBatchSize', 'DeliveryParallelism' and 'MaxEventsPerBatch' must be at least 1.");
        }

        return options;
    }
}
