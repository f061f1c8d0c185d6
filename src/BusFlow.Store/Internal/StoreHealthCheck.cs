using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace BusFlow.Store.Internal;

/// <summary>Readiness of the store: the database answers, with the outbox backlog as data.</summary>
internal sealed class StoreHealthCheck(IDbContextFactory<BusFlowDbContext> databases, BusFlowStoreOptions options) : IHealthCheck
{
    public const string Name = "busflow-store";

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var db = await databases.CreateDbContextAsync(cancellationToken);
            var deliveredUpTo = await OutboxDelivery.DeliveredUpToAsync(db, cancellationToken);
            var undeliveredEvents = await db.Events.CountAsync(e => e.Position == null || e.Position > deliveredUpTo, cancellationToken);
            var undeliveredMessages = await db.Outbox.CountAsync(o => o.DeliveredAt == null, cancellationToken);
            return HealthCheckResult.Healthy($"{options.Provider} store reachable", new Dictionary<string, object>
            {
                ["undeliveredEvents"] = undeliveredEvents,
                ["undeliveredMessages"] = undeliveredMessages,
            });
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy($"{options.Provider} store unreachable ('{BusFlowStoreOptions.Section}:ConnectionString'): {ex.Message}", ex);
        }
    }
}
