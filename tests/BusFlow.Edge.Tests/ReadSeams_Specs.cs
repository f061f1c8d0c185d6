using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;

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
