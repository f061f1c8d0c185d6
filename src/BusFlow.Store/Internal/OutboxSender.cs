using System.Threading.Channels;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Sends outbox messages (step commands, worker reports, wake-ups) right after the transaction that
/// wrote them committed, from the process that committed them, so a saga-worker hop does not wait
/// for the next delivery round; and marks them delivered in batches in the background. A message
/// whose send fails, or whose process dies before it was marked, stays undelivered and
/// <see cref="OutboxDelivery"/> sends it once it is older than
/// <see cref="BusFlowStoreOptions.DirectSendGrace"/> (receivers de-duplicate by MessageId).
/// </summary>
internal sealed partial class OutboxSender(
    IBus bus,
    IBusFlowSendEndpoints addresses,
    IDbContextFactory<BusFlowDbContext> databases,
    StoreWriteGate writes,
    BusFlowStoreOptions options,
    TimeProvider time,
    ILogger<OutboxSender> logger) : BackgroundService
{
    /// <summary>How long sent rows gather before one write marks them delivered.</summary>
    internal static readonly TimeSpan MarkInterval = TimeSpan.FromMilliseconds(50);

    private const int MarkBatch = 1000;

    private readonly Channel<long> _sent = Channel.CreateUnbounded<long>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>
    /// Sends the messages of committed rows in order (the objects the transaction wrote, so nothing is
    /// read back); stops at the first failure and leaves the rest to the delivery.
    /// </summary>
    public async Task SendCommittedAsync(IReadOnlyList<(OutboxMessageRecord Row, object Message)> committed, CancellationToken cancellationToken)
    {
        foreach (var (row, message) in committed)
        {
            try
            {
                await SendAsync(bus, addresses, row, message, message.GetType(), options.BrokerConfirmTimeout, time, cancellationToken);
                _sent.Writer.TryWrite(row.Id);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                LogDirectSendFailed(logger, ex, row.Id);
                return;
            }
        }
    }

    /// <summary>Sends or publishes one stored outbox row with its own MessageId; an unreadable row is logged and skipped.</summary>
    public static async Task SendStoredAsync(IBus bus, IBusFlowSendEndpoints addresses, OutboxMessageRecord row, TimeSpan confirmTimeout, TimeProvider time, ILogger logger, CancellationToken cancellationToken)
    {
        if (OutboxRows.Read(row) is not var (message, type))
        {
            LogUnreadableMessage(logger, row.Id, row.MessageType);
            return;
        }

        await SendAsync(bus, addresses, row, message, type, confirmTimeout, time, cancellationToken);
    }

    /// <summary>
    /// Sends (to its destination) or publishes one outbox message with its row's MessageId, and gives
    /// up waiting for the broker's confirmation after <paramref name="confirmTimeout"/>: a send the
    /// client never completes throws <see cref="TimeoutException"/> and is left behind.
    /// </summary>
    private static async Task SendAsync(IBus bus, IBusFlowSendEndpoints addresses, OutboxMessageRecord row, object message, Type type, TimeSpan confirmTimeout, TimeProvider time, CancellationToken cancellationToken)
    {
        Task sending;
        if (row.Destination is { } destination)
        {
            var endpoint = await addresses.GetSendEndpointAsync(bus, new Uri(destination), cancellationToken).WaitAsync(confirmTimeout, time, cancellationToken);
            sending = endpoint.Send(message, type, Pipe.Execute<SendContext>(c => c.MessageId = row.MessageId), cancellationToken);
        }
        else
        {
            sending = bus.Publish(message, type, Pipe.Execute<PublishContext>(c => c.MessageId = row.MessageId), cancellationToken);
        }

        await sending.WaitAsync(confirmTimeout, time, cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var ids = new List<long>();
        var full = false;
        try
        {
            while (await _sent.Reader.WaitToReadAsync(stoppingToken))
            {
                // Gather what is sent meanwhile: under load one write marks many rows instead of one
                // write transaction (on SQLite, a turn of the store's one write lock) every few sends.
                // Unmarked rows are only re-sent after DirectSendGrace, far longer than this. After a
                // full batch there is more waiting already.
                if (!full)
                {
                    await Task.Delay(MarkInterval, time, stoppingToken);
                }

                while (ids.Count < MarkBatch && _sent.Reader.TryRead(out var id))
                {
                    ids.Add(id);
                }

                try
                {
                    await using var db = await databases.CreateDbContextAsync(stoppingToken);
                    using var turn = await writes.EnterAsync(stoppingToken);
                    var now = time.GetUtcNow();
                    await db.Outbox.Where(o => ids.Contains(o.Id) && o.DeliveredAt == null)
                        .ExecuteUpdateAsync(s => s.SetProperty(o => o.DeliveredAt, now), stoppingToken);
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    // Left unmarked: the delivery sends them again after the grace period (at least once).
                    LogMarkFailed(logger, ex, ids.Count);
                    await Task.Delay(TimeSpan.FromMilliseconds(200), time, stoppingToken);
                }

                full = ids.Count == MarkBatch;
                ids.Clear();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox row {RowId} could not be sent after commit; the outbox delivery sends it later")]
    private static partial void LogDirectSendFailed(ILogger logger, Exception exception, long rowId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Marking {Count} sent outbox rows delivered failed; the outbox delivery sends them again later")]
    private static partial void LogMarkFailed(ILogger logger, Exception exception, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox row {RowId} has a message type this version does not know ({MessageType}); skipped")]
    private static partial void LogUnreadableMessage(ILogger logger, long rowId, string messageType);
}
