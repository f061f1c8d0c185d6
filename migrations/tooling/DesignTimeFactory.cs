using BusFlow.Store;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace BusFlow.Store.Migrations.Tooling;

/// <summary>Gives dotnet-ef a context for the provider in BUSFLOW_MIGRATIONS_PROVIDER (Sqlite or Postgres).</summary>
public sealed class DesignTimeFactory : IDesignTimeDbContextFactory<BusFlowDbContext>
{
    public BusFlowDbContext CreateDbContext(string[] args)
    {
        var kind = Enum.Parse<StoreProviderKind>(Environment.GetEnvironmentVariable("BUSFLOW_MIGRATIONS_PROVIDER") ?? "Sqlite");
        var connection = kind == StoreProviderKind.Postgres ? "Host=127.0.0.1;Port=55432;Username=postgres;Database=busflow_design" : "Data Source=design.db";
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, kind, connection);
        return new BusFlowDbContext(options.Options);
    }
}

public static class Program
{
    public static void Main()
    {
    }
}
