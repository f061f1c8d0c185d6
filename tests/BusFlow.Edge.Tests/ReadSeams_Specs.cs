using BusFlow.Store;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.Edge.Tests;

/// <summary>The edge depends on the core's read seams, not on a store (docs/architecture.md, "The read seams").</summary>
public class When_the_edge_has_no_store
{
    [Fact]
    public async Task Should_refuse_to_map_the_edge_naming_the_missing_seams()
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddBusFlow(builder.Configuration, busflow => busflow.UseEdge(builder.Configuration));
        await using var app = builder.Build();

        var refused = Assert.Throws<InvalidOperationException>(() => app.MapBusFlowEdge());

        Assert.Contains("not registered: IPipelineQueries, IPipelineEventLog, IIdempotencyKeys", refused.Message, StringComparison.Ordinal);
        Assert.Contains("UseStore", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Should_be_built_without_the_store_assembly()
    {
        // The web layer's assembly references the core and ASP.NET Core, never BusFlow.Store (nor EF
        // Core or a database driver through it).
        var references = typeof(EdgeOptions).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToList();

        Assert.Contains("BusFlow", references);
        Assert.DoesNotContain(references, r => r.StartsWith("BusFlow.Store", StringComparison.Ordinal) || r.StartsWith("Microsoft.EntityFrameworkCore", StringComparison.Ordinal) || r is "Npgsql" or "Microsoft.Data.Sqlite");
    }
}

/// <summary>UseStore registers the seams with TryAdd: what the application registered first stays.</summary>
public class When_the_application_registers_its_own_seam
{
    [Fact]
    public async Task Should_keep_it_and_register_the_store_for_the_others()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        var own = new KeysInMemory();
        var builder = WebApplication.CreateBuilder();
        builder.Services.AddSingleton<IIdempotencyKeys>(own);
        builder.Services.AddBusFlow(builder.Configuration, busflow => busflow.UseStore(db.Options()));
        await using var app = builder.Build();

        Assert.Same(own, app.Services.GetRequiredService<IIdempotencyKeys>());
        Assert.Same(app.Services.GetRequiredService<PipelineStore>(), app.Services.GetRequiredService<IPipelineQueries>());
        Assert.Same(app.Services.GetRequiredService<PipelineEventReader>(), app.Services.GetRequiredService<IPipelineEventLog>());
    }

    /// <summary>An application's own keys, kept in its memory (a single-process deployment might).</summary>
    private sealed class KeysInMemory : IIdempotencyKeys
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, string), IdempotencyClaim> _claims = new();

        public Task<IdempotencyClaim?> FindAsync(string scope, string key, CancellationToken cancellationToken = default) =>
            Task.FromResult(_claims.TryGetValue((scope, key), out var claim) ? claim : null);

        public Task<IdempotencyClaim> ClaimAsync(string scope, string key, string requestHash, Guid pipelineId, CancellationToken cancellationToken = default) =>
            Task.FromResult(_claims.GetOrAdd((scope, key), new IdempotencyClaim(requestHash, pipelineId)));
    }
}
