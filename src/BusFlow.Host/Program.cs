using BusFlow;
using BusFlow.Edge;
using BusFlow.Host;
using BusFlow.Host.Samples;
using BusFlow.Store;

// Serves BusFlow: the saga, the sample workers, the web edge and the dashboard on the embedded
// defaults (in-memory bus, SQLite file) at http://localhost:5080 unless --urls says otherwise.
// Verbs: `run` runs one sample pipeline in the terminal; `--migrate` applies the store's migrations.
if (args.Contains("--migrate") || args.FirstOrDefault() == "run")
{
    return await ConsoleRun.RunAsync([.. args.SkipWhile(a => a == "run")], migrateOnly: args.Contains("--migrate"));
}

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
if (string.IsNullOrEmpty(builder.Configuration["urls"]))
{
    builder.WebHost.UseUrls("http://localhost:5080");
}

var roles = HostRoles.Read(builder.Configuration);
builder.AddHostTelemetry(roles);
builder.Services.AddBusFlow(builder.Configuration, busflow =>
{
    busflow.RunSaga = roles.Saga;
    busflow.UseStore(builder.Configuration);
    SamplePipelines.Register(busflow, runWorkers: roles.Worker, SamplePipelines.ReleaseVersions(builder.Configuration));
    if (roles.Edge)
    {
        busflow.UseEdge(builder.Configuration);
    }
});

var app = builder.Build();
app.MapHostMetrics(roles);
if (roles.Edge)
{
    app.UseDefaultFiles();
    app.UseStaticFiles();
    app.MapBusFlowEdge();
}
else
{
    app.MapHealthChecks("/health/live", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions { Predicate = _ => false });
    app.MapHealthChecks("/health/ready", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") });
}

app.Lifetime.ApplicationStarted.Register(() =>
{
    foreach (var url in app.Urls)
    {
        Console.WriteLine(roles.Edge ? $"BusFlow ({roles}) is running: open {url}/ for the dashboard, {url}/api/definitions for the API" : $"BusFlow ({roles}) is running at {url}");
    }
});
await app.RunAsync();
return 0;
