using BusFlow.Store;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace BusFlow.Store.Migrations.Tooling;

/// <summary>Gives dotnet-ef a context for the provider in BUSFLOW_MIGRATIONS_PROVIDER (Sqlite, Postgres or SqlServer).</summary>
public sealed class DesignTimeFactory : IDesignTimeDbContextFactory<BusFlowDbContext>
{
    public BusFlowDbContext CreateDbContext(string[] args)
    {
        var kind = Enum.Parse<StoreProviderKind>(Environment.GetEnvironmentVariable("BUSFLOW_MIGRATIONS_PROVIDER") ?? "Sqlite");
        // No connection is opened to add a migration.
        var connection = kind switch
        {
            StoreProviderKind.Postgres => "Host=127.0.0.1;Port=55432;Username=postgres;Database=busflow_design",
            StoreProviderKind.SqlServer => "Server=127.0.0.1;Database=busflow_design;Integrated Security=false;TrustServerCertificate=true",
            _ => "Data Source=design.db",
        };
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
