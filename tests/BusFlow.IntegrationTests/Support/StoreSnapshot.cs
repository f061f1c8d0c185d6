using System.Globalization;
using BusFlow.Store;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;
using static System.FormattableString;

namespace BusFlow.IntegrationTests.Support;

/// <summary>
/// Writes what the store holds for a pipeline that did not end (its event rows with their positions,
/// its outbox rows, the delivery lease with how far it delivered, and the backlog), so a stalled run in
/// CI shows whether the work stopped in the saga, the worker or the delivery.
/// </summary>
internal static class StoreSnapshot
{
    public static async Task WriteAsync(IServiceProvider services, Guid pipelineId, ITestOutputHelper output)
    {
        await using var db = await services.GetRequiredService<IDbContextFactory<BusFlowDbContext>>().CreateDbContextAsync();
        output.WriteLine(Invariant($"store of pipeline {pipelineId} at {DateTimeOffset.UtcNow:HH:mm:ss.fff}:"));
        foreach (var e in await db.Events.AsNoTracking().Where(e => e.PipelineId == pipelineId).OrderBy(e => e.Seq).ToListAsync())
        {
            output.WriteLine(Invariant($"  event {e.Seq} {e.Type} position {e.Position?.ToString(CultureInfo.InvariantCulture) ?? "-"}"));
        }

        foreach (var o in await db.Outbox.AsNoTracking().Where(o => o.PipelineId == pipelineId).OrderBy(o => o.Id).ToListAsync())
        {
            output.WriteLine(Invariant($"  outbox {o.Id} {o.MessageType} to {o.Destination ?? "(publish)"} created {o.CreatedAt:HH:mm:ss.fff} delivered {o.DeliveredAt?.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture) ?? "no"}"));
        }

        foreach (var lease in await db.Leases.AsNoTracking().ToListAsync())
        {
            output.WriteLine(Invariant($"  lease {lease.Name} held by {lease.Owner} until {lease.ExpiresAt:HH:mm:ss.fff}; positions given up to {lease.LastPosition}, delivered up to {lease.DeliveredUpTo}"));
        }

        output.WriteLine(Invariant($"  unpositioned events: {await db.Events.CountAsync(e => e.Position == null)}; undelivered outbox rows: {await db.Outbox.CountAsync(o => o.DeliveredAt == null)}"));
    }
}
