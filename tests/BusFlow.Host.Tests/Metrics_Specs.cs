using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace BusFlow.Host.Tests;

/// <summary><c>/metrics</c> of a host started the README way, scraped in Prometheus's text format as Prometheus would.</summary>
public sealed partial class When_prometheus_scrapes_the_host(RunningHostFixture fixture) : IClassFixture<RunningHostFixture>
{
    private RunningHost Host => fixture.Host;

    [Fact]
    public async Task Should_count_pipelines_steps_commits_and_deliveries_as_they_run()
    {
        var before = await ScrapeAsync(Host.Http);

        var flaky = await Host.Http.StartAsync("demo", new { delayMs = 10, progressTicks = 0, flakyStep = "enrich" });
        var failing = await Host.Http.StartAsync("demo", new { delayMs = 10, progressTicks = 0, failStep = "merge" });
        Assert.Equal("Completed", (await Host.Http.WaitForEndAsync(flaky)).GetProperty("status").GetString());
        Assert.Equal("Failed", (await Host.Http.WaitForEndAsync(failing)).GetProperty("status").GetString());

        // Counted after the commit that decided the events; the edge's status read may come first.
        var after = await ScrapeAsync(Host.Http);
        for (var i = 0; i < 50 && after.Sum("busflow_pipelines_finished_total", ("busflow_definition", "demo")) < before.Sum("busflow_pipelines_finished_total", ("busflow_definition", "demo")) + 2; i++)
        {
            await Task.Delay(100);
            after = await ScrapeAsync(Host.Http);
        }

        double Moved(string name, params (string, string)[] labels) => after.Sum(name, labels) - before.Sum(name, labels);
        Assert.Equal(2, Moved("busflow_pipelines_started_total", ("busflow_definition", "demo")));
        Assert.Equal(1, Moved("busflow_pipelines_finished_total", ("busflow_definition", "demo"), ("busflow_outcome", "completed")));
        Assert.Equal(1, Moved("busflow_pipelines_finished_total", ("busflow_definition", "demo"), ("busflow_outcome", "failed")));
        // The flaky step failed once and was tried again; merge failed for good after its retries.
        Assert.Equal(1, Moved("busflow_step_duration_seconds_count", ("busflow_step", "enrich"), ("busflow_outcome", "retrying")));
        Assert.True(Moved("busflow_step_duration_seconds_count", ("busflow_step", "merge"), ("busflow_outcome", "failed")) == 1);
        Assert.True(Moved("busflow_step_duration_seconds_count", ("busflow_step", "fetch"), ("busflow_outcome", "completed")) == 2);
        Assert.True(Moved("busflow_step_duration_seconds_sum", ("busflow_step", "fetch")) > 0);

        // The store's commits and the outbox's deliveries, the edge's relay, ASP.NET Core and the runtime.
        Assert.True(Moved("busflow_store_commit_duration_seconds_count", ("busflow_store_provider", "Sqlite")) > 0);
        Assert.True(Moved("busflow_store_commit_transitions_sum") >= Moved("busflow_store_commit_transitions_count"));
        Assert.True(Moved("busflow_outbox_events_published_total") > 0);
        Assert.True(Moved("busflow_outbox_delivery_lag_seconds_count") > 0);
        Assert.True(Moved("busflow_edge_events_in_total") > 0);
        Assert.True(after.Sum("http_server_request_duration_seconds_count", ("http_route", "/api/pipelines/{id}")) > 0);
        Assert.Contains(after.Samples, s => s.Name.StartsWith("dotnet_gc_", StringComparison.Ordinal));
        Assert.Contains(after.Samples, s => s.Name.StartsWith("messaging_masstransit_", StringComparison.Ordinal) || s.Name.StartsWith("messaging_", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Should_ask_an_edge_with_auth_for_a_key()
    {
        await using var host = await RunningHost.StartAsync(new() { ["BusFlow:Edge:Auth:ApiKeys:key-a"] = "tenant-a" });
        using var anonymous = await host.Http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);

        using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        request.Headers.Authorization = new("ApiKey", "key-a");
        using var scraped = await host.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, scraped.StatusCode);
        Assert.Contains("busflow_", await scraped.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static async Task<Scrape> ScrapeAsync(HttpClient http)
    {
        using var response = await http.GetAsync("/metrics");
        response.EnsureSuccessStatusCode();
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        return Scrape.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>One sample of Prometheus's text format: <c>name{label="value",...} value [timestamp]</c>.</summary>
    private sealed record Sample(string Name, Dictionary<string, string> Labels, double Value);

    private sealed partial record Scrape(List<Sample> Samples)
    {
        public static Scrape Parse(string text)
        {
            var samples = new List<Sample>();
            foreach (var line in text.Split('\n'))
            {
                if (line.Length == 0 || line[0] == '#')
                {
                    continue;
                }

                var match = SamplePattern().Match(line);
                Assert.True(match.Success, $"not a Prometheus sample: {line}");
                var labels = LabelPattern().Matches(match.Groups["labels"].Value).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
                samples.Add(new Sample(match.Groups["name"].Value, labels, double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture)));
            }

            return new Scrape(samples);
        }

        /// <summary>The sum of the samples of <paramref name="name"/> that carry every label given.</summary>
        public double Sum(string name, params (string Key, string Value)[] labels) =>
            Samples.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).Sum(s => s.Value);

        [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)( \d+)?$")]
        private static partial Regex SamplePattern();

        [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
        private static partial Regex LabelPattern();
    }
}
