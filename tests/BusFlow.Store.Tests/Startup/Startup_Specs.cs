using BusFlow.Store.Internal;
using BusFlow.Store.Tests.Support;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.Store.Tests;

public sealed class When_the_database_is_unreachable_at_start
{
    // No server needed: nothing listens on port 1.
    [Theory]
    [InlineData(StoreProviderKind.Postgres, "Host=127.0.0.1;Port=1;Username=postgres;Password=secret;Timeout=2", "port=1")]
    [InlineData(StoreProviderKind.SqlServer, "Server=127.0.0.1,1;User Id=sa;Password=secret;Connect Timeout=2;TrustServerCertificate=true", "127.0.0.1,1")]
    public async Task Should_fail_with_a_message_naming_the_setting(StoreProviderKind provider, string connectionString, string named)
    {
        var options = new BusFlowStoreOptions { Provider = provider, ConnectionString = connectionString, ApplyMigrations = true };

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => StoreHost.Start(options, b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("one", p => p.Then("w"))));

        Assert.Contains("BusFlow:Store:ConnectionString", error.Message, StringComparison.Ordinal);
        Assert.Contains($"({provider})", error.Message, StringComparison.Ordinal);
        Assert.Contains(named, error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("secret", error.Message, StringComparison.Ordinal);
    }
}

public sealed class When_the_database_server_is_away
{
    // A real client's error for a server that refuses connections (nothing listens on port 1).
    [Theory]
    [InlineData(StoreProviderKind.Postgres, "Host=127.0.0.1;Port=1;Username=postgres;Timeout=2")]
    [InlineData(StoreProviderKind.SqlServer, "Server=127.0.0.1,1;User Id=sa;Password=x;Connect Timeout=2;TrustServerCertificate=true")]
    public async Task Should_count_its_error_as_transient_so_work_waits_for_it(StoreProviderKind provider, string connectionString)
    {
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, provider, connectionString);
        await using var db = new BusFlowDbContext(options.Options);
        // As the store sees it: Npgsql's wrapped by EF Core's execution strategy, SqlClient's as it is.
        var error = await Assert.ThrowsAnyAsync<Exception>(() => db.Database.OpenConnectionAsync());
        Assert.True(BusFlowStoreExtensions.IsTransient(error), $"{error.GetType().Name}: {error.Message}");
    }
}

public sealed class When_readiness_is_checked
{
    [SkippableTheory]
    [AllStores]
    public async Task Should_report_the_store_healthy_while_it_answers_and_unhealthy_when_it_does_not(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.StartWithOneStep(db.Options());

        var report = await host.Services.GetRequiredService<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService>()
            .CheckHealthAsync(c => c.Tags.Contains("ready"));
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, report.Entries[StoreHealthCheck.Name].Status);

        var unreachable = new BusFlowStoreOptions { Provider = StoreProviderKind.Postgres, ConnectionString = "Host=127.0.0.1;Port=1;Username=postgres;Timeout=2" };
        var services = new ServiceCollection();
        services.AddDbContextFactory<BusFlowDbContext>(o => StoreProvider.Configure(o, unreachable.Provider, unreachable.ConnectionString));
        await using var provider2 = services.BuildServiceProvider();
        var check = new StoreHealthCheck(provider2.GetRequiredService<IDbContextFactory<BusFlowDbContext>>(), unreachable);
        var result = await check.CheckHealthAsync(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext());
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Unhealthy, result.Status);
        Assert.Contains("BusFlow:Store:ConnectionString", result.Description, StringComparison.Ordinal);
    }
}

public sealed class When_the_store_opens_a_SQLite_connection
{
    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public async Task Should_set_it_up_for_many_writers_with_rare_checkpoints(bool fullSync, long synchronous)
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString, fullSync);
        await using var context = new BusFlowDbContext(options.Options);
        await context.Database.OpenConnectionAsync();
        var connection = context.Database.GetDbConnection();

        async Task<object?> Pragma(string name)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA " + name;
            return await command.ExecuteScalarAsync();
        }

        Assert.Equal("wal", await Pragma("journal_mode"));
        Assert.Equal(synchronous, await Pragma("synchronous"));
        Assert.Equal(4000L, await Pragma("wal_autocheckpoint"));
        Assert.Equal(30_000L, await Pragma("busy_timeout"));
    }
}

public sealed class When_the_store_opens_a_PostgreSQL_connection
{
    [Theory]
    [InlineData("", true)]
    [InlineData(";Max Auto Prepare=0", false)]
    [InlineData(";maxautoprepare=0", false)]
    public async Task Should_prepare_the_statements_it_repeats_unless_the_connection_string_says_otherwise(string setting, bool prepared)
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString + setting);
        await using var context = new BusFlowDbContext(options.Options);
        await context.Database.OpenConnectionAsync();
        var connection = context.Database.GetDbConnection();

        async Task<long> Scalar(string sql)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
        }

        // The same statement, as the hot path repeats its own, past Npgsql's usage threshold (5).
        for (var i = 0; i < 8; i++)
        {
            await Scalar("SELECT count(*) FROM pg_class WHERE relname = 'busflow_pipelines_probe'");
        }

        Assert.Equal(prepared, await Scalar("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%busflow_pipelines_probe%'") > 0);
    }
}

public sealed class When_a_process_was_killed_while_it_held_the_migration_lock
{
    [Fact]
    public async Task Should_start_without_waiting_for_it_when_the_schema_is_current()
    {
        // EF Core's SQLite migration lock is a row in __EFMigrationsLock; a process killed while
        // holding it never deletes it, and a migration waits for it forever.
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString);
        await using (var context = new BusFlowDbContext(options.Options))
        {
            await context.Database.MigrateAsync();
            await context.Database.ExecuteSqlRawAsync("INSERT INTO \"__EFMigrationsLock\" (\"Id\", \"Timestamp\") VALUES (1, '2000-01-01 00:00:00+00:00')");
        }

        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("one", p => p.Then("w"))).WaitAsync(TimeSpan.FromSeconds(30));
        var id = await host.RunPipeline("one");
    }
}
