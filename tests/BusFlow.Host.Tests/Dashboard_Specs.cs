using Microsoft.Playwright;
using Xunit.Abstractions;

namespace BusFlow.Host.Tests;

/// <summary>The dashboard in Debian's Chromium (headless, through Playwright), against a host process.</summary>
public sealed class When_a_person_uses_the_dashboard(ITestOutputHelper output) : IAsyncLifetime
{
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;

    public async Task InitializeAsync()
    {
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Environment.GetEnvironmentVariable("BUSFLOW_CHROMIUM") ?? "/usr/bin/chromium",
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
    }

    public async Task DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
    }

    private static string Artifact(string name)
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "artifacts");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    [Fact]
    public async Task Should_start_a_demo_and_watch_it_complete_with_its_steps_coloured_and_its_events_listed()
    {
        await using var host = await RunningHost.StartAsync();
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
        await page.GotoAsync(host.BaseUri.ToString());
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live");
        await page.SelectOptionAsync("#definition", "demo");
        await page.FillAsync("#input", """{"delayMs":150,"progressTicks":2,"failStep":null,"flakyStep":"clean"}""");

        // Every render is recorded, so a step drawn as running is seen however fast the run goes
        // (polling the page between renders can miss a short step).
        await page.EvaluateAsync("""
            () => {
              window.seenRunning = [];
              window.seenStatuses = [];
              new MutationObserver(() => {
                const status = document.querySelector("#detail-status")?.textContent;
                if (status && !window.seenStatuses.includes(status)) window.seenStatuses.push(status);
                for (const step of document.querySelectorAll("#dag .step[data-state='running']")) {
                  if (!window.seenRunning.includes(step.dataset.step)) window.seenRunning.push(step.dataset.step);
                }
              }).observe(document.body, { subtree: true, childList: true, attributes: true });
            }
            """);
        await page.ClickAsync("#start-button");

        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Completed", new() { Timeout = 30_000 });
        var seenRunning = await page.EvaluateAsync<string[]>("() => window.seenRunning");
        Assert.Equal(["clean", "enrich", "fetch", "merge", "report"], seenRunning.Order());
        Assert.Contains("Running", await page.EvaluateAsync<string[]>("() => window.seenStatuses"));
        foreach (var step in new[] { "fetch", "clean", "enrich", "merge", "report" })
        {
            await Assertions.Expect(page.Locator($"#dag .step[data-step='{step}']")).ToHaveAttributeAsync("data-state", "completed");
        }

        await Assertions.Expect(page.Locator("#timeline li[data-type='PipelineCompleted']")).ToHaveCountAsync(1);
        await Assertions.Expect(page.Locator("#timeline li[data-type='StepFailed']")).ToContainTextAsync("will retry");
        await Assertions.Expect(page.Locator("#pipelines tbody tr").First.Locator(".status")).ToHaveTextAsync("Completed");
        await Assertions.Expect(page.Locator("#pipelines tbody tr").First).ToContainTextAsync("5/5");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artifact("dashboard-demo.png"), FullPage = true });
        output.WriteLine("screenshot: " + Artifact("dashboard-demo.png"));
    }

    [Fact]
    public async Task Should_draw_each_step_s_attempts_retries_and_suspensions_on_a_timeline_and_chart_the_live_rate()
    {
        await using var host = await RunningHost.StartAsync();
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 1000 } });
        await page.GotoAsync(host.BaseUri.ToString());
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live");

        // A retried step: its failed first attempt and its second, one after the other on its row.
        await page.SelectOptionAsync("#definition", "demo");
        await page.FillAsync("#input", """{"delayMs":100,"progressTicks":0,"flakyStep":"enrich"}""");
        await page.ClickAsync("#start-button");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Completed", new() { Timeout = 30_000 });
        await Assertions.Expect(page.Locator("#gantt .bar[data-step='enrich']")).ToHaveCountAsync(2);
        await Assertions.Expect(page.Locator("#gantt .bar[data-step='enrich'][data-attempt='1']")).ToHaveAttributeAsync("data-kind", "retrying");
        await Assertions.Expect(page.Locator("#gantt .bar[data-step='enrich'][data-attempt='2']")).ToHaveAttributeAsync("data-kind", "completed");
        foreach (var step in new[] { "fetch", "clean", "merge", "report" })
        {
            await Assertions.Expect(page.Locator($"#gantt .bar[data-step='{step}']")).ToHaveAttributeAsync("data-kind", "completed");
        }

        // Bars in time order: merge starts after enrich's second attempt ends.
        var enrich = await page.Locator("#gantt .bar[data-step='enrich'][data-attempt='2']").BoundingBoxAsync();
        var merge = await page.Locator("#gantt .bar[data-step='merge']").BoundingBoxAsync();
        Assert.True(merge!.X >= enrich!.X + enrich.Width - 1, $"merge at {merge.X}, enrich ends at {enrich.X + enrich.Width}");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artifact("dashboard-timeline-retry.png"), FullPage = true });

        // A suspension: its wait drawn while it lasts, then the step's run after the answer.
        await page.SelectOptionAsync("#definition", "approval");
        await page.ClickAsync("#start-button");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Suspended", new() { Timeout = 20_000 });
        await Assertions.Expect(page.Locator("#gantt .bar[data-step='approve'][data-kind='suspended']")).ToHaveCountAsync(1);
        await page.ClickAsync(".suspension button:has-text('Approve')");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Completed", new() { Timeout = 20_000 });
        await Assertions.Expect(page.Locator("#gantt .bar[data-step='approve'][data-kind='suspended']")).ToHaveCountAsync(1);
        await Assertions.Expect(page.Locator("#gantt .bar[data-step='publish']")).ToHaveAttributeAsync("data-kind", "completed");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artifact("dashboard-timeline-suspension.png"), FullPage = true });

        // The live chart counted both pipelines' ends and their steps' durations.
        await Assertions.Expect(page.Locator("#chart")).ToHaveAttributeAsync("data-finished", "2", new() { Timeout = 5_000 });
        Assert.True(int.Parse(await page.Locator("#chart").GetAttributeAsync("data-steps") ?? "0", System.Globalization.CultureInfo.InvariantCulture) >= 8);
        await Assertions.Expect(page.Locator("#p95")).ToContainTextAsync(" ms over ");
        await Assertions.Expect(page.Locator("#chart path.finished")).ToHaveAttributeAsync("d", new System.Text.RegularExpressions.Regex("^M"));
        await page.Locator("#chart").ScreenshotAsync(new LocatorScreenshotOptions { Path = Artifact("dashboard-live-chart.png") });
    }

    [Fact]
    public async Task Should_answer_a_suspension_and_cancel_a_run_and_show_readable_errors()
    {
        await using var host = await RunningHost.StartAsync();
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(host.BaseUri.ToString());
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live");

        await page.SelectOptionAsync("#definition", "approval");
        await page.ClickAsync("#start-button");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Suspended", new() { Timeout = 20_000 });
        await page.ClickAsync(".suspension button:has-text('Approve')");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Completed", new() { Timeout = 20_000 });
        await Assertions.Expect(page.Locator("#dag .step[data-step='publish']")).ToHaveAttributeAsync("data-state", "completed");

        await page.SelectOptionAsync("#definition", "demo");
        await page.FillAsync("#input", """{"delayMs":5000,"progressTicks":1}""");
        await page.ClickAsync("#start-button");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Running");
        await page.ClickAsync("#cancel");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Cancelled", new() { Timeout = 20_000 });
        await Assertions.Expect(page.Locator("#dag .step[data-step='fetch']")).ToHaveAttributeAsync("data-state", "cancelled");

        // Input that is not JSON: said plainly, nothing started.
        var rows = await page.Locator("#pipelines tbody tr").CountAsync();
        await page.FillAsync("#input", "{not json");
        await page.ClickAsync("#start-button");
        await Assertions.Expect(page.Locator("#banner")).ToContainTextAsync("not valid JSON");
        Assert.Equal(rows, await page.Locator("#pipelines tbody tr").CountAsync());
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artifact("dashboard-actions.png"), FullPage = true });
    }

    [Fact]
    public async Task Should_ask_for_an_API_key_when_the_edge_requires_one_and_work_with_it()
    {
        await using var host = await RunningHost.StartAsync(new() { ["BusFlow:Edge:Auth:ApiKeys:key-a"] = "tenant-a" });
        var context = await _browser.NewContextAsync();
        var page = await context.NewPageAsync();
        await page.GotoAsync(host.BaseUri.ToString());
        await Assertions.Expect(page.Locator("#banner")).ToContainTextAsync("requires an API key");

        await page.GotoAsync(host.BaseUri + "?apiKey=key-a");
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live");
        await page.SelectOptionAsync("#definition", "wordcount");
        await page.ClickAsync("#start-button");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Completed", new() { Timeout = 20_000 });

        // The key is kept for the next visit.
        await page.GotoAsync(host.BaseUri.ToString());
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live");
        await Assertions.Expect(page.Locator("#pipelines tbody tr")).ToHaveCountAsync(1);
        await context.DisposeAsync();
    }

    [Fact]
    public async Task Should_reconnect_after_the_server_restarts_and_show_what_happened_meanwhile()
    {
        await using var host = await RunningHost.StartAsync();
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(host.BaseUri.ToString());
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live");
        await page.SelectOptionAsync("#definition", "demo");
        await page.FillAsync("#input", """{"delayMs":400,"progressTicks":1}""");
        await page.ClickAsync("#start-button");
        await Assertions.Expect(page.Locator("#dag .step[data-step='fetch']")).ToHaveAttributeAsync("data-state", "completed", new() { Timeout = 20_000 });

        await host.KillAsync();
        await Assertions.Expect(page.Locator("#connection")).ToHaveAttributeAsync("data-state", "reconnecting");
        await host.StartAgainAsync();
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live", new() { Timeout = 20_000 });
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Completed", new() { Timeout = 40_000 });
        var seqs = await page.Locator("#timeline li .seq").AllTextContentsAsync();
        Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), seqs);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artifact("dashboard-after-restart.png"), FullPage = true });
    }
    [Fact]
    public async Task Should_show_which_definition_versions_still_run_and_draw_a_pipeline_on_the_version_it_started_with()
    {
        await using var host = await RunningHost.StartAsync(new() { ["Samples:ReleaseVersions"] = "1" });
        using var client = new BusFlow.Client.BusFlowClient(host.BaseUri);
        var old = await client.StartAsync("release");
        while ((await client.GetStatusAsync(old)).Suspensions.Count == 0)
        {
            await Task.Delay(100);
        }

        // The next release keeps version 1 draining beside version 2.
        await host.KillAsync();
        host.Settings["Samples:ReleaseVersions"] = "1,2";
        await host.StartAgainAsync();
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
        await page.GotoAsync(host.BaseUri.ToString());
        await Assertions.Expect(page.Locator("#connection")).ToHaveTextAsync("live");
        var draining = page.Locator("#versions tr[data-definition='release'][data-version='1']");
        await Assertions.Expect(draining.Locator(".version-role")).ToHaveTextAsync("draining");
        await Assertions.Expect(draining.Locator(".running")).ToHaveTextAsync("1");
        await Assertions.Expect(page.Locator("#versions tr[data-definition='release'][data-version='2'] .version-role")).ToHaveTextAsync("current");

        await page.ClickAsync($"#pipelines tbody tr[data-id='{old}']");
        await Assertions.Expect(page.Locator("#detail-version")).ToHaveTextAsync("version 1");
        await Assertions.Expect(page.Locator("#dag .step[data-step='ship']")).ToHaveCountAsync(1);
        await Assertions.Expect(page.Locator("#dag .step[data-step='announce']")).ToHaveCountAsync(0);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artifact("dashboard-versions.png"), FullPage = true });
        await page.ClickAsync("#suspensions button:text('Approve')");
        await Assertions.Expect(page.Locator("#detail-status")).ToHaveTextAsync("Completed", new() { Timeout = 30_000 });
        await Assertions.Expect(page.Locator("#dag .step[data-step='ship']")).ToHaveAttributeAsync("data-state", "completed");
        await Assertions.Expect(draining.Locator(".running")).ToHaveTextAsync("0", new() { Timeout = 15_000 });
        output.WriteLine("screenshot: " + Artifact("dashboard-versions.png"));
    }
}
