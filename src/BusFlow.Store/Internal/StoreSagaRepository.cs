using BusFlow.Contracts;
using MassTransit;
using MassTransit.Context;
using MassTransit.Middleware;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;

namespace BusFlow.Store.Internal;

/// <summary>
/// MassTransit saga repository for <see cref="PipelineState"/> on EF Core: one database context
/// per message; a new instance is inserted, a loaded one updated with optimistic concurrency
/// (<see cref="PipelineState.Version"/>), and everything the transition added (events, outbox
/// rows) saves in the same SaveChanges, hence the same transaction.
/// </summary>
internal sealed class StoreSagaRepositoryContextFactory(
    IDbContextFactory<BusFlowDbContext> databases,
    StoreSession session,
    GroupCommit groups,
    ISagaConsumeContextFactory<StoreSession, PipelineState> factory,
    TimeProvider time) :
    ISagaRepositoryContextFactory<PipelineState>,
    ILoadSagaRepositoryContextFactory<PipelineState>
{
    public async Task Send<T>(ConsumeContext<T> context, IPipe<SagaRepositoryContext<PipelineState, T>> next)
        where T : class
    {
        await using var db = await databases.CreateDbContextAsync(context.CancellationToken);
        // A connection is opened for the transition's look-ups (OpenForReadsAsync; any other read
        // takes one from the pool around its command) and given back before it waits for its
        // group, whose rows commit on the group's own connection, and before the after-commit
        // actions, which wait for the broker. Most transitions read nothing (a start's first try, a
        // state this process committed) and so take no connection at all.
        bool transitioned;
        try
        {
            transitioned = await TransitionAsync(db, context, next);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }

        if (transitioned)
        {
            await session.CommittedAsync();
        }
    }

    /// <summary>Runs and saves the transition; false when the message was handled before.</summary>
    private async Task<bool> TransitionAsync<T>(BusFlowDbContext db, ConsumeContext<T> context, IPipe<SagaRepositoryContext<PipelineState, T>> next)
        where T : class
    {
        var consumer = InboxConsumer<T>();
        // A message handled before comes back after a crash (redelivered by the broker, or sent again
        // by an outbox whose deliverer died before marking it). Looking it up costs a round trip per
        // transition, so it is done only when the message may be such a copy: redelivered, or being
        // retried. A copy that arrives fresh (re-sent) runs its transition, whose inbox row then
        // violates the inbox key at commit; that rolls the transition back and is retried, and the
        // retry finds the inbox row here.
        var mayHaveBeenHandled = context.ReceiveContext.Redelivered || context.GetRedeliveryCount() > 0 || context.GetRetryAttempt() > 0;
        if (mayHaveBeenHandled && context.MessageId is { } messageId && await OpenForReadsAsync(db, context.CancellationToken) && await StoreQueries.For(db).Handled(db, messageId, consumer, context.CancellationToken))
        {
            // Its transition committed before: already applied.
            return false;
        }

        session.Begin(db);
        try
        {
            await next.Send(new StoreSagaRepositoryContext<T>(db, session, groups, context, factory, time));
        }
        catch
        {
            session.End();
            throw;
        }

        return true;
    }

    /// <summary>
    /// Opens the transition's connection for the reads that follow (EF Core would otherwise take one
    /// from the pool and give it back around each command); true, for use in a condition.
    /// </summary>
    internal static async Task<bool> OpenForReadsAsync(BusFlowDbContext db, CancellationToken cancellationToken)
    {
        if (db.Database.GetDbConnection().State != System.Data.ConnectionState.Open)
        {
            await db.Database.OpenConnectionAsync(cancellationToken);
        }

        return true;
    }

    /// <summary>The inbox name of the saga's handling of one message type.</summary>
    internal static string InboxConsumer<T>() => "saga:" + typeof(T).Name;

    public Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<PipelineState> query, IPipe<SagaRepositoryQueryContext<PipelineState, T>> next)
        where T : class =>
        throw new NotSupportedException("The pipeline saga correlates every message by pipeline id; queries are not used.");

    public async Task<T> Execute<T>(Func<LoadSagaRepositoryContext<PipelineState>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
        where T : class
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        return await asyncMethod(new StoreLoadContext(db, cancellationToken));
    }

    public void Probe(ProbeContext context) => context.Add("persistence", "busflow-store");

    private sealed class StoreLoadContext(BusFlowDbContext db, CancellationToken cancellationToken) : BasePipeContext(cancellationToken), LoadSagaRepositoryContext<PipelineState>
    {
        public async Task<PipelineState> Load(Guid correlationId) =>
            (await WorkItemRows.FilledAsync(db, await StoreQueries.For(db).PipelineReadOnly(db, correlationId, CancellationToken), CancellationToken))!;
    }
}

internal sealed class StoreSagaRepositoryContext<TMessage> :
    ConsumeContextScope<TMessage>,
    SagaRepositoryContext<PipelineState, TMessage>
    where TMessage : class
{
    private readonly BusFlowDbContext db;
    private readonly StoreSession session;
    private readonly GroupCommit groups;
    private readonly ConsumeContext<TMessage> context;
    private readonly ISagaConsumeContextFactory<StoreSession, PipelineState> factory;
    private readonly TimeProvider time;

    public StoreSagaRepositoryContext(BusFlowDbContext db, StoreSession session, GroupCommit groups, ConsumeContext<TMessage> context, ISagaConsumeContextFactory<StoreSession, PipelineState> factory, TimeProvider time)
        : base(context)
    {
        this.time = time;
        this.db = db;
        this.session = session;
        this.groups = groups;
        this.context = context;
        this.factory = factory;
    }

    public Task<SagaConsumeContext<PipelineState, TMessage>> Add(PipelineState instance) =>
        factory.CreateSagaConsumeContext(session, context, instance, SagaConsumeContextMode.Add);

    public async Task<SagaConsumeContext<PipelineState, TMessage>> Insert(PipelineState instance)
    {
        db.Pipelines.Add(instance);
        await db.SaveChangesAsync(CancellationToken);
        return await factory.CreateSagaConsumeContext(session, context, instance, SagaConsumeContextMode.Insert);
    }

    public async Task<SagaConsumeContext<PipelineState, TMessage>> Load(Guid correlationId)
    {
        var instance = groups.States.Attach(db, correlationId)
            ?? (IsFirstTryOfStart() ? null : await LoadAsync(correlationId));

        return instance is null ? default! : await factory.CreateSagaConsumeContext(session, context, instance, SagaConsumeContextMode.Load);
    }

    private async Task<PipelineState?> LoadAsync(Guid correlationId)
    {
        await StoreSagaRepositoryContextFactory.OpenForReadsAsync(db, CancellationToken);
        return await WorkItemRows.FilledAsync(db, await StoreQueries.For(db).Pipeline(db, correlationId, CancellationToken), CancellationToken);
    }

    /// <summary>
    /// A start's first try does not look for its pipeline: a start is nearly always of a new one, and
    /// the look-up was a round trip (and a connection's reset) per pipeline. A start of a pipeline
    /// that exists (a client or an outbox sending it again) then fails its insert on the key, which
    /// fails its group; every member is tried again alone, and the start's retry looks it up, finds
    /// it and is ignored by the state machine, as before.
    /// </summary>
    private bool IsFirstTryOfStart() =>
        context.Message is StartPipeline && context.GetRetryAttempt() == 0 && context.GetRedeliveryCount() == 0 && !context.ReceiveContext.Redelivered;

    public async Task Save(SagaConsumeContext<PipelineState> context)
    {
        db.Pipelines.Add(context.Saga);
        MarkHandled();
        await CommitAsync(context.Saga.CorrelationId);
    }

    public async Task Update(SagaConsumeContext<PipelineState> context)
    {
        context.Saga.Version++;
        MarkHandled();
        await CommitAsync(context.Saga.CorrelationId);
    }

    /// <summary>
    /// Saves the transition. The first try joins a group (<see cref="GroupCommit"/>): its rows move to
    /// the group's context and commit with other pipelines' transitions; when that group fails, the
    /// message is retried (<see cref="GroupCommitFailedException"/> is transient) and then saved
    /// alone, by the same code in a group of its own.
    /// </summary>
    private async Task CommitAsync(Guid pipelineId)
    {
        var member = new TransitionMember(db, session.TakeBulkEvents(), pipelineId, session);
        // The member took what the context tracks; it commits on the group's connection.
        await db.Database.CloseConnectionAsync();
        if (context.GetRetryAttempt() > 0 || context.GetRedeliveryCount() > 0)
        {
            await groups.CommitAloneAsync(member, CancellationToken);
            return;
        }

        if (!await groups.CommitAsync(member, CancellationToken))
        {
            throw new GroupCommitFailedException();
        }

        session.AfterCommitChained(member.AfterCommitted);
    }

    /// <summary>The inbox row commits with the transition, so a redelivery of this message is recognised.</summary>
    private void MarkHandled()
    {
        if (context.MessageId is { } messageId)
        {
            db.Inbox.Add(new InboxRecord { MessageId = messageId, Consumer = StoreSagaRepositoryContextFactory.InboxConsumer<TMessage>(), ReceivedAt = time.GetUtcNow() });
        }
    }

    public async Task Delete(SagaConsumeContext<PipelineState> context)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(CancellationToken);
        await db.WorkItems.Where(w => w.PipelineId == context.Saga.CorrelationId).ExecuteDeleteAsync(CancellationToken);
        db.Pipelines.Remove(context.Saga);
        await db.SaveChangesAsync(CancellationToken);
        await transaction.CommitAsync(CancellationToken);
        groups.States.Forget([context.Saga.CorrelationId]);
    }

    public Task Discard(SagaConsumeContext<PipelineState> context) => Task.CompletedTask;

    public Task Undo(SagaConsumeContext<PipelineState> context) => Task.CompletedTask;

    public Task<SagaConsumeContext<PipelineState, T>> CreateSagaConsumeContext<T>(ConsumeContext<T> consumeContext, PipelineState instance, SagaConsumeContextMode mode)
        where T : class =>
        factory.CreateSagaConsumeContext(session, consumeContext, instance, mode);
}

/// <summary>
/// A transition of the state machine in a group: what its own database context tracks (the state,
/// event, outbox, inbox and suspension rows) is taken when it is handed over, with the original
/// values the optimistic check compares, and added to the group's context, so it saves there. Its
/// own context goes back to the pool when the transition ends, grouped or not, so nothing of it is
/// read later.
/// </summary>
internal sealed class TransitionMember(BusFlowDbContext db, List<PipelineEventRecord> bulkEvents, Guid pipelineId, StoreSession session) : GroupMember(pipelineId)
{
    private readonly List<(object Entity, EntityState State, PropertyValues Original, string[] Modified)> _entries =
        [.. db.ChangeTracker.Entries().Select(e => (e.Entity, e.State, e.OriginalValues.Clone(), e.Properties.Where(p => p.IsModified).Select(p => p.Metadata.Name).ToArray()))];

    public override bool ReadsState => false;

    public override Func<Task> AfterCommit => session.RunAfterCommitAsync;

    public override Task AddToAsync(GroupTransaction group, CancellationToken cancellationToken)
    {
        foreach (var (entity, state, original, modified) in _entries)
        {
            switch (state)
            {
                case EntityState.Added:
                    group.Db.Add(entity);
                    break;
                case EntityState.Modified:
                    var target = group.Db.Attach(entity);
                    target.OriginalValues.SetValues(original);
                    foreach (var property in modified)
                    {
                        target.Property(property).IsModified = true;
                    }

                    break;
                case EntityState.Deleted:
                    group.Db.Remove(entity);
                    break;
            }

            if (entity is PipelineState pipeline)
            {
                // A fold of the same pipeline later in this group decides on this state and must not raise its version again.
                group.Versioned.Add(pipeline);
            }
        }

        group.BulkEvents.AddRange(bulkEvents);
        return Task.CompletedTask;
    }
}

/// <summary>The group a transition joined failed to commit; the message is retried and then saved alone.</summary>
internal sealed class GroupCommitFailedException() : Exception("The group this transition was committed in failed; it is retried alone.");
