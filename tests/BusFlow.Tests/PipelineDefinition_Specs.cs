using BusFlow.Contracts;
using BusFlow.Internal;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.Tests;

/// <summary>
/// Pipeline declarations: what <see cref="PipelineBuilder.Build"/> and <see cref="BusFlowBuilder"/> reject
/// (each error naming the steps, outputs, workers or pipelines at fault) and what a valid declaration becomes.
/// </summary>
public static class PipelineDefinition_Specs
{
    private static readonly HashSet<string> NoDefinitions = new(StringComparer.Ordinal);

    private static PipelineBuilder Pipeline(string name = "p") => new(name);

    private static HashSet<string> Names(params string[] names) => new(names, StringComparer.Ordinal);

    private static PipelineDefinitionException Invalid(PipelineBuilder pipeline, IReadOnlySet<string>? workers = null, IReadOnlySet<string>? definitions = null) =>
        Assert.Throws<PipelineDefinitionException>(() => pipeline.Build(workers, definitions));

    private static PipelineDefinitionException Invalid(Action<BusFlowBuilder> configure) =>
        Assert.Throws<PipelineDefinitionException>(() => BusFlow(configure).Build());

    private static PipelineDefinitionException InvalidRegistration(Action<BusFlowBuilder> configure) =>
        Assert.Throws<PipelineDefinitionException>(() => BusFlow(configure));

    private static BusFlowBuilder BusFlow(Action<BusFlowBuilder> configure)
    {
        BusFlowBuilder? builder = null;
        new ServiceCollection().AddMassTransit(bus => builder = new BusFlowBuilder(bus));
        configure(builder!);
        return builder!;
    }

    private static Task<StepResult> Succeed(StepContext context) => Task.FromResult(StepResult.Success());

    /// <summary>Asserts that one error mentions every fragment, and returns it.</summary>
    private static string AssertReports(PipelineDefinitionException exception, params string[] fragments)
    {
        var match = exception.Errors.FirstOrDefault(e => fragments.All(f => e.Contains(f, StringComparison.Ordinal)));
        Assert.True(
            match is not null,
            $"No error mentions all of [{string.Join(", ", fragments.Select(f => $"\"{f}\""))}]. Errors:{Environment.NewLine}{string.Join(Environment.NewLine, exception.Errors)}");
        return match!;
    }

    /// <summary>Asserts that <paramref name="error"/> reports a cycle and returns its steps, e.g. ["a", "b", "a"].</summary>
    private static string[] CycleIn(string error, string prefix)
    {
        var start = error.IndexOf(prefix, StringComparison.Ordinal);
        Assert.True(start >= 0, $"'{error}' does not report a cycle ('{prefix}').");
        return error[(start + prefix.Length)..].TrimEnd('.').Split(" -> ");
    }

    /// <summary>
    /// Asserts that <paramref name="reported"/> walks the cycle <paramref name="expected"/> in its direction,
    /// starting anywhere and returning to where it started: for a -> b -> c that is a -> b -> c -> a, b -> c -> a -> b or c -> a -> b -> c.
    /// </summary>
    private static void AssertCycle(string[] reported, params string[] expected)
    {
        var shown = string.Join(" -> ", reported);
        Assert.True(reported.Length == expected.Length + 1, $"'{shown}' is not the cycle {string.Join(" -> ", expected)} (wrong length).");
        Assert.True(reported[0] == reported[^1], $"'{shown}' does not end where it starts.");
        var offset = Array.IndexOf(expected, reported[0]);
        Assert.True(offset >= 0, $"'{shown}' does not start on a step of the cycle.");
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(reported[i] == expected[(offset + i) % expected.Length], $"'{shown}' is not the cycle {string.Join(" -> ", expected)} in order.");
        }
    }

    private static string[] NamesOf(IEnumerable<StepDefinition> steps) => [.. steps.Select(s => s.Name)];

    private const string StepCycle = "the steps form a cycle: ";
    private const string ChildCycle = "Pipelines start each other as children in a cycle: ";

    public sealed class When_steps_form_a_cycle_through_After
    {
        [Fact]
        public void Should_name_every_step_of_the_cycle_in_order()
        {
            var pipeline = Pipeline("loop")
                .Step("a", s => s.After("c"))
                .Step("b", s => s.After("a"))
                .Step("c", s => s.After("b"));

            var error = Assert.Single(Invalid(pipeline).Errors);

            Assert.StartsWith("Pipeline 'loop': the steps form a cycle: ", error, StringComparison.Ordinal);
            AssertCycle(CycleIn(error, StepCycle), "a", "b", "c");
        }

        [Fact]
        public void Should_report_the_cycle_in_the_format_step_arrow_step()
        {
            // The walk starts at the first stuck step and follows "waits for" edges, then is reversed.
            var error = Assert.Single(Invalid(Pipeline("loop").Step("a", s => s.After("c")).Step("b", s => s.After("a")).Step("c", s => s.After("b"))).Errors);

            Assert.Equal("Pipeline 'loop': the steps form a cycle: b -> c -> a -> b.", error);
        }

        [Fact]
        public void Should_leave_out_steps_that_only_wait_for_the_cycle()
        {
            var pipeline = Pipeline()
                .Step("before", s => s.After("a"))
                .Step("a", s => s.After("c"))
                .Step("b", s => s.After("a"))
                .Step("c", s => s.After("b"))
                .Step("after", s => s.After("c"));

            var cycle = CycleIn(Assert.Single(Invalid(pipeline).Errors), StepCycle);

            AssertCycle(cycle, "a", "b", "c");
            Assert.DoesNotContain("before", cycle);
            Assert.DoesNotContain("after", cycle);
        }

        [Fact]
        public void Should_report_a_two_step_cycle()
        {
            var error = Assert.Single(Invalid(Pipeline().Step("a", s => s.After("b")).Step("b", s => s.After("a"))).Errors);

            AssertCycle(CycleIn(error, StepCycle), "a", "b");
        }

        [Fact]
        public void Should_report_a_step_running_after_itself()
        {
            var error = Assert.Single(Invalid(Pipeline().Step("a").Step("self", s => s.After("self"))).Errors);

            Assert.Contains("step 'self' runs after itself (cycle: self -> self)", error, StringComparison.Ordinal);
        }

        [Fact]
        public void Should_report_a_cycle_closed_by_Then()
        {
            var pipeline = Pipeline().Then("a", s => s.After("c")).Then("b").Then("c");

            AssertCycle(CycleIn(Assert.Single(Invalid(pipeline).Errors), StepCycle), "a", "b", "c");
        }
    }

    public sealed class When_steps_form_a_cycle_through_their_outputs
    {
        [Fact]
        public void Should_name_every_step_of_the_cycle_in_order()
        {
            var pipeline = Pipeline("loop")
                .Step("a", s => s.Produces("from-a").Consumes("from-c"))
                .Step("b", s => s.Produces("from-b").Consumes("from-a"))
                .Step("c", s => s.Produces("from-c").Consumes("from-b"));

            var error = Assert.Single(Invalid(pipeline).Errors);

            Assert.StartsWith("Pipeline 'loop': the steps form a cycle: ", error, StringComparison.Ordinal);
            AssertCycle(CycleIn(error, StepCycle), "a", "b", "c");
        }

        [Fact]
        public void Should_name_the_steps_when_After_and_outputs_close_the_cycle_together()
        {
            var pipeline = Pipeline()
                .Step("a", s => s.Consumes("c"))
                .Step("b", s => s.After("a"))
                .Step("c", s => s.Consumes("b"));

            AssertCycle(CycleIn(Assert.Single(Invalid(pipeline).Errors), StepCycle), "a", "b", "c");
        }

        [Fact]
        public void Should_name_every_step_of_a_cycle_through_a_map_source()
        {
            var pipeline = Pipeline()
                .Step("split", s => s.Consumes("gathered"))
                .Map("each", s => s.Over("split"))
                .Step("gather", s => s.Consumes("each").Produces("gathered"));

            AssertCycle(CycleIn(Assert.Single(Invalid(pipeline).Errors), StepCycle), "split", "each", "gather");
        }

        [Fact]
        public void Should_report_a_step_consuming_its_own_output()
        {
            var error = Assert.Single(Invalid(Pipeline().Step("echo", s => s.Produces("sound").Consumes("sound"))).Errors);

            Assert.Contains("step 'echo' consumes its own output 'sound' (cycle: echo -> echo)", error, StringComparison.Ordinal);
        }
    }

    public sealed class When_a_step_consumes_an_output_no_step_produces
    {
        [Fact]
        public void Should_name_the_step_and_the_output()
        {
            var pipeline = Pipeline("orders").Step("fetch").Step("report", s => s.Consumes("fetch", "totals"));

            var error = Assert.Single(Invalid(pipeline).Errors);

            Assert.Equal("Pipeline 'orders': step 'report' consumes 'totals', which no step produces.", error);
        }

        [Fact]
        public void Should_not_accept_the_step_name_of_a_step_that_renamed_its_output()
        {
            var pipeline = Pipeline().Step("fetch", s => s.Produces("rows")).Step("report", s => s.Consumes("fetch"));

            AssertReports(Invalid(pipeline), "step 'report'", "consumes 'fetch'", "no step produces");
        }

        [Fact]
        public void Should_name_a_map_source_no_step_produces()
        {
            var pipeline = Pipeline().Step("fetch").Map("each", s => s.Over("items"));

            AssertReports(Invalid(pipeline), "step 'each'", "consumes 'items'", "no step produces");
        }

        [Fact]
        public void Should_name_a_child_input_the_step_does_not_consume()
        {
            var pipeline = Pipeline().Step("fetch").Child("sub", "other", s => s.ChildInputFrom("fetch"));

            AssertReports(Invalid(pipeline), "step 'sub'", "hands 'fetch' to its child", "Consumes(\"fetch\")");
        }

        [Fact]
        public void Should_name_both_steps_producing_the_same_output()
        {
            var pipeline = Pipeline().Step("left", s => s.Produces("rows")).Step("right", s => s.Produces("rows"));

            AssertReports(Invalid(pipeline), "the output 'rows'", "'left'", "'right'");
        }
    }

    public sealed class When_After_names_an_unknown_step
    {
        [Fact]
        public void Should_name_the_step_and_the_unknown_step()
        {
            var pipeline = Pipeline("orders").Step("fetch").Step("report", s => s.After("fetch", "ghost"));

            var error = Assert.Single(Invalid(pipeline).Errors);

            Assert.Equal("Pipeline 'orders': step 'report' runs after 'ghost', which is not a step of this pipeline.", error);
        }

        [Fact]
        public void Should_not_match_step_names_case_insensitively()
        {
            var pipeline = Pipeline().Step("fetch").Step("report", s => s.After("Fetch"));

            AssertReports(Invalid(pipeline), "step 'report'", "runs after 'Fetch'");
        }
    }

    public sealed class When_two_steps_have_the_same_name
    {
        [Fact]
        public void Should_name_the_duplicate_and_how_often_it_is_used()
        {
            var pipeline = Pipeline("orders").Step("fetch").Step("fetch").Step("report").Step("fetch");

            var error = Assert.Single(Invalid(pipeline).Errors);

            Assert.Equal("Pipeline 'orders': the step name 'fetch' is used 3 times; step names must be unique.", error);
        }

        [Fact]
        public void Should_name_each_duplicated_name()
        {
            var exception = Invalid(Pipeline().Step("a").Step("b").Map("a", s => s.Over("input.items")).Child("b", "other"));

            AssertReports(exception, "the step name 'a' is used 2 times");
            AssertReports(exception, "the step name 'b' is used 2 times");
        }

        [Fact]
        public void Should_name_an_empty_step_name()
        {
            AssertReports(Invalid(Pipeline().Step("a").Step(" ")), "Pipeline 'p':", "a step has an empty name");
        }
    }

    public sealed class When_a_step_runs_on_an_unknown_worker
    {
        [Fact]
        public void Should_name_the_step_and_the_worker()
        {
            var pipeline = Pipeline("orders").Step("fetch").Step("report", s => s.Worker("reporter"));

            var error = Assert.Single(Invalid(pipeline, Names("fetch")).Errors);

            Assert.Equal(
                "Pipeline 'orders': step 'report' runs on worker 'reporter', which is not registered; register it with AddWorker(\"reporter\", ...) or declare it with AddRemoteWorker(\"reporter\").",
                error);
        }

        [Fact]
        public void Should_default_the_worker_to_the_step_name()
        {
            var exception = Invalid(Pipeline().Step("fetch").Map("each", s => s.Over("fetch")), Names("fetch"));

            AssertReports(exception, "step 'each'", "worker 'each'");
        }

        [Fact]
        public void Should_not_check_workers_when_none_are_known()
        {
            var definition = Pipeline().Step("fetch", s => s.Worker("anything")).Build();

            Assert.Equal("anything", definition["fetch"].Worker);
        }

        [Fact]
        public void Should_name_the_worker_when_registered_through_BusFlowBuilder()
        {
            var exception = Invalid(b => b
                .AddWorker("fetch", Succeed)
                .AddRemoteWorker("clean")
                .AddPipeline("orders", p => p.Then("fetch").Then("clean").Then("store", s => s.Worker("storage"))));

            var error = Assert.Single(exception.Errors);
            Assert.Contains("Pipeline 'orders': step 'store' runs on worker 'storage', which is not registered", error, StringComparison.Ordinal);
        }

        [Fact]
        public void Should_accept_local_and_remote_workers_through_BusFlowBuilder()
        {
            var registry = BusFlow(b => b
                .AddWorker("fetch", Succeed)
                .AddWorker<NoopHandler>("clean")
                .AddRemoteWorker("store")
                .AddPipeline("orders", p => p.Then("fetch").Then("clean").Then("save", s => s.Worker("store")))).Build();

            var definition = Assert.Single(registry.Definitions);
            Assert.Equal("orders", definition.Name);
            Assert.Same(definition, registry.Find("orders"));
            Assert.Equal(["clean", "fetch"], registry.LocalWorkers.Order(StringComparer.Ordinal));
        }
    }

    public sealed class When_a_pipeline_has_no_steps
    {
        [Fact]
        public void Should_name_the_pipeline()
        {
            var error = Assert.Single(Invalid(Pipeline("nothing")).Errors);

            Assert.Equal("Pipeline 'nothing': it has no steps; add at least one with Step(), Then(), Map() or Child().", error);
        }

        [Fact]
        public void Should_name_the_pipeline_when_registered_through_BusFlowBuilder()
        {
            var exception = Invalid(b => b.AddRemoteWorker("a").AddPipeline("full", p => p.Step("a")).AddPipeline("nothing", _ => { }));

            AssertReports(exception, "Pipeline 'nothing'", "no steps");
        }

        [Fact]
        public void Should_name_an_empty_pipeline_name()
        {
            AssertReports(Invalid(Pipeline("").Step("a")), "A pipeline needs a non-empty name.");
        }
    }

    public sealed class When_a_map_step_has_nothing_to_map_over
    {
        [Fact]
        public void Should_name_the_step()
        {
            var error = Assert.Single(Invalid(Pipeline("orders").Map("each", _ => { })).Errors);

            Assert.Equal(
                "Pipeline 'orders': step 'each' is a map step but says nothing to map over; call Over(\"<output>\") or Over(\"input.<property>\").",
                error);
        }

        [Fact]
        public void Should_accept_a_pipeline_input_property_without_an_edge()
        {
            var definition = Pipeline().Step("other").Map("each", s => s.Over("input.items")).Build();

            Assert.Equal("input.items", definition["each"].MapSource);
            Assert.Empty(definition["each"].DependsOn);
            Assert.Empty(definition["each"].Consumes);
            Assert.Equal(0, definition["each"].Level);
        }

        [Fact]
        public void Should_wait_for_the_step_producing_the_list()
        {
            var definition = Pipeline().Step("split", s => s.Produces("parts")).Map("each", s => s.Over("parts").MaxParallelism(3)).Build();

            var each = definition["each"];
            Assert.Equal(StepKind.Map, each.Kind);
            Assert.Equal(["split"], each.DependsOn);
            Assert.Equal(["parts"], each.Consumes);
            Assert.Equal(3, each.MaxParallelism);
            Assert.Equal("each", each.Worker);
        }

        [Fact]
        public void Should_also_report_the_unknown_worker_of_that_map_step()
        {
            // Every problem should be reported at once (see PipelineBuilder.Build's contract).
            var exception = Invalid(Pipeline().Map("each", _ => { }), Names("other"));

            AssertReports(exception, "step 'each'", "nothing to map over");
            AssertReports(exception, "step 'each'", "worker 'each'", "not registered");
        }
    }

    public sealed class When_a_child_step_names_an_unregistered_pipeline
    {
        [Fact]
        public void Should_name_the_step_and_the_pipeline()
        {
            var pipeline = Pipeline("parent").Step("a").Child("sub", "missing");

            var error = Assert.Single(Invalid(pipeline, null, Names("parent", "other")).Errors);

            Assert.Equal("Pipeline 'parent': step 'sub' runs the child pipeline 'missing', which is not registered.", error);
        }

        [Fact]
        public void Should_name_the_pipeline_when_registered_through_BusFlowBuilder()
        {
            var exception = Invalid(b => b
                .AddRemoteWorker("a")
                .AddPipeline("child", p => p.Step("a"))
                .AddPipeline("parent", p => p.Child("run-child", "child").Child("run-missing", "missing")));

            var error = Assert.Single(exception.Errors);
            Assert.Equal("Pipeline 'parent': step 'run-missing' runs the child pipeline 'missing', which is not registered.", error);
        }

        [Fact]
        public void Should_name_a_pipeline_running_itself_as_a_child()
        {
            var error = Assert.Single(Invalid(Pipeline("parent").Child("again", "parent"), null, Names("parent")).Errors);

            Assert.Contains("step 'again' runs its own pipeline 'parent' as a child", error, StringComparison.Ordinal);
        }

        [Fact]
        public void Should_not_give_a_child_step_a_worker()
        {
            var definition = Pipeline().Step("fetch").Child("sub", "other", s => s.Consumes("fetch").ChildInputFrom("fetch")).Build(Names("fetch"), Names("p", "other"));

            var sub = definition["sub"];
            Assert.Equal(StepKind.Child, sub.Kind);
            Assert.Null(sub.Worker);
            Assert.Equal("other", sub.ChildDefinition);
            Assert.Equal("fetch", sub.ChildInputFrom);
            Assert.Equal(["fetch"], sub.DependsOn);
        }
    }

    public sealed class When_pipelines_start_each_other_as_children_in_a_cycle
    {
        [Fact]
        public void Should_name_both_pipelines_of_a_two_pipeline_cycle()
        {
            var exception = Invalid(b => b
                .AddPipeline("a", p => p.Child("run-b", "b"))
                .AddPipeline("b", p => p.Child("run-a", "a")));

            var error = Assert.Single(exception.Errors);
            Assert.Equal("Pipelines start each other as children in a cycle: a -> b -> a.", error);
        }

        [Fact]
        public void Should_name_every_pipeline_of_the_cycle_in_order()
        {
            var exception = Invalid(b => b
                .AddRemoteWorker("work")
                .AddPipeline("root", p => p.Step("work").Child("run-x", "x"))
                .AddPipeline("x", p => p.Child("run-y", "y"))
                .AddPipeline("y", p => p.Step("work").Child("run-z", "z"))
                .AddPipeline("z", p => p.Child("run-x", "x")));

            var cycle = CycleIn(Assert.Single(exception.Errors), ChildCycle);

            AssertCycle(cycle, "x", "y", "z");
            Assert.DoesNotContain("root", cycle);
        }

        [Fact]
        public void Should_accept_children_shared_without_a_cycle()
        {
            var registry = BusFlow(b => b
                .AddRemoteWorker("work")
                .AddPipeline("leaf", p => p.Step("work"))
                .AddPipeline("middle", p => p.Child("one", "leaf").Child("two", "leaf"))
                .AddPipeline("root", p => p.Child("left", "middle").Child("right", "leaf"))).Build();

            Assert.Equal(["leaf", "middle", "root"], registry.Definitions.Select(d => d.Name).Order(StringComparer.Ordinal));
        }
    }

    public sealed class When_a_step_has_invalid_settings
    {
        [Theory]
        [InlineData(0, 100, 2)]
        [InlineData(-1, 100, 2)]
        [InlineData(3, -1, 2)]
        [InlineData(3, 100, 0.5)]
        [InlineData(3, 100, 0)]
        public void Should_name_the_step_with_an_invalid_retry_policy(int maxAttempts, int delayMs, double multiplier)
        {
            var pipeline = Pipeline("orders").Step("fetch").Step("report", s => s.Retry(maxAttempts, TimeSpan.FromMilliseconds(delayMs), multiplier));

            var error = Assert.Single(Invalid(pipeline).Errors);

            Assert.StartsWith("Pipeline 'orders': step 'report' has an invalid retry policy", error, StringComparison.Ordinal);
        }

        [Fact]
        public void Should_name_every_step_an_invalid_default_retry_applies_to()
        {
            var exception = Invalid(Pipeline().Then("a").Then("b", s => s.Retry(2, TimeSpan.Zero)).Then("c").DefaultRetry(0, TimeSpan.FromSeconds(1)));

            Assert.Equal(2, exception.Errors.Count);
            AssertReports(exception, "step 'a'", "invalid retry policy");
            AssertReports(exception, "step 'c'", "invalid retry policy");
        }

        [Fact]
        public void Should_name_the_step_with_a_negative_maximum_retry_delay()
        {
            // DelayBefore would otherwise schedule retries with a negative delay (-1 s).
            var pipeline = Pipeline().Step("fetch", s => s.Retry(3, TimeSpan.FromSeconds(1), 2, TimeSpan.FromSeconds(-1)));

            AssertReports(Invalid(pipeline), "step 'fetch'", "invalid retry policy");
        }

        [Theory]
        [InlineData(0)]
        [InlineData(-5)]
        public void Should_name_the_step_with_a_non_positive_timeout(int seconds)
        {
            var pipeline = Pipeline("orders").Step("report", s => s.Timeout(TimeSpan.FromSeconds(seconds)));

            var error = Assert.Single(Invalid(pipeline).Errors);

            Assert.Equal($"Pipeline 'orders': step 'report' has a timeout of {TimeSpan.FromSeconds(seconds)}; it must be positive.", error);
        }

        [Theory]
        [InlineData(0)]
        [InlineData(-5)]
        public void Should_name_the_step_with_a_non_positive_suspension_timeout(int seconds)
        {
            var pipeline = Pipeline("orders").Step("approve", s => s.SuspensionTimeout(TimeSpan.FromSeconds(seconds)));

            AssertReports(Invalid(pipeline), "Pipeline 'orders'", "step 'approve'");
        }

        [Fact]
        public void Should_name_the_pipeline_with_MaxParallelism_0()
        {
            var error = Assert.Single(Invalid(Pipeline("orders").Step("fetch").MaxParallelism(0)).Errors);

            Assert.Equal("Pipeline 'orders': MaxParallelism must be at least 1 (was 0).", error);
        }

        [Fact]
        public void Should_name_the_step_with_MaxParallelism_0()
        {
            var error = Assert.Single(Invalid(Pipeline("orders").Map("each", s => s.Over("input.items").MaxParallelism(0))).Errors);

            Assert.Equal("Pipeline 'orders': step 'each' has MaxParallelism 0; it must be at least 1.", error);
        }
    }

    public sealed class When_a_worker_is_registered_badly
    {
        [Theory]
        [InlineData("bad name!")]
        [InlineData("")]
        [InlineData("-leading-dash")]
        [InlineData("a/b")]
        [InlineData("queue:name")]
        public void Should_name_a_worker_name_that_cannot_be_a_queue_name(string name)
        {
            var local = InvalidRegistration(b => b.AddWorker(name, Succeed));
            var remote = InvalidRegistration(b => b.AddRemoteWorker(name));
            var typed = InvalidRegistration(b => b.AddWorker<NoopHandler>(name));

            foreach (var exception in new[] { local, remote, typed })
            {
                Assert.Equal($"The worker name '{name}' is not usable as a queue name; use letters, digits, '-', '_' and '.', up to 100 characters.", Assert.Single(exception.Errors));
            }
        }

        [Fact]
        public void Should_name_a_worker_name_longer_than_100_characters()
        {
            var name = new string('w', 101);

            AssertReports(InvalidRegistration(b => b.AddRemoteWorker(name)), $"'{name}'", "not usable as a queue name");
        }

        [Fact]
        public void Should_accept_a_worker_name_of_100_characters()
        {
            var name = "w" + new string('-', 98) + "w";

            var registry = BusFlow(b => b.AddWorker(name, Succeed).AddPipeline("p", p => p.Step(name))).Build();

            Assert.Equal([name], registry.LocalWorkers);
        }

        [Theory]
        [InlineData("worker\n")]
        [InlineData("worker\r\n")]
        public void Should_name_a_worker_name_ending_in_a_line_break(string name)
        {
            // A queue name cannot end in a line break; the pattern's '$' also matches before a final '\n'.
            AssertReports(InvalidRegistration(b => b.AddRemoteWorker(name)), "not usable as a queue name");
        }

        [Fact]
        public void Should_name_a_worker_registered_twice()
        {
            var exception = InvalidRegistration(b => b.AddWorker("fetch", Succeed).AddWorker("other", Succeed).AddWorker<NoopHandler>("fetch"));

            Assert.Equal("The worker 'fetch' is registered twice.", Assert.Single(exception.Errors));
        }

        [Fact]
        public void Should_name_a_worker_with_concurrency_0()
        {
            var exception = InvalidRegistration(b => b.AddWorker("fetch", Succeed, concurrency: 0));

            AssertReports(exception, "The worker 'fetch'", "concurrency 0");
        }

        [Fact]
        public void Should_name_a_pipeline_registered_twice()
        {
            var exception = Invalid(b => b.AddRemoteWorker("a").AddPipeline("orders", p => p.Step("a")).AddPipeline("orders", p => p.Step("a")));

            Assert.Equal("The pipeline name 'orders' is registered 2 times. To keep an older version beside the new one while its pipelines finish, mark it Draining().", Assert.Single(exception.Errors));
        }
    }

    public sealed class When_a_pipeline_has_several_problems
    {
        [Fact]
        public void Should_report_every_problem_naming_its_step()
        {
            var pipeline = Pipeline("orders")
                .MaxParallelism(0)
                .Step("fetch", s => s.Worker("fetcher"))
                .Step("fetch")
                .Step("clean", s => s.After("ghost"))
                .Step("enrich", s => s.Consumes("nothing"))
                .Map("each", _ => { })
                .Step("report", s => s.Retry(0, TimeSpan.Zero).Timeout(TimeSpan.Zero))
                .Child("sub", "missing");

            var exception = Invalid(pipeline, Names("fetch", "clean", "enrich", "each", "report"), Names("orders"));

            Assert.True(exception.Errors.Count > 1);
            AssertReports(exception, "MaxParallelism must be at least 1");
            AssertReports(exception, "the step name 'fetch' is used 2 times");
            AssertReports(exception, "step 'fetch'", "worker 'fetcher'");
            AssertReports(exception, "step 'clean'", "runs after 'ghost'");
            AssertReports(exception, "step 'enrich'", "consumes 'nothing'");
            AssertReports(exception, "step 'each'", "nothing to map over");
            AssertReports(exception, "step 'report'", "invalid retry policy");
            AssertReports(exception, "step 'report'", "timeout");
            AssertReports(exception, "step 'sub'", "child pipeline 'missing'");
            Assert.Equal(9, exception.Errors.Count);
            Assert.All(exception.Errors, e => Assert.StartsWith("Pipeline 'orders': ", e, StringComparison.Ordinal));
            Assert.All(exception.Errors, e => Assert.Contains(e, exception.Message, StringComparison.Ordinal));
        }

        [Fact]
        public void Should_report_the_problems_of_every_pipeline_registered_through_BusFlowBuilder()
        {
            var exception = Invalid(b => b
                .AddRemoteWorker("fetch")
                .AddPipeline("one", p => p.Step("fetch").Step("store"))
                .AddPipeline("two", p => p.Step("fetch", s => s.After("ghost")))
                .AddPipeline("two", p => p.Step("fetch"))
                .AddPipeline("three", p => p.Child("sub", "missing")));

            Assert.True(exception.Errors.Count > 1);
            AssertReports(exception, "The pipeline name 'two' is registered 2 times");
            AssertReports(exception, "Pipeline 'one'", "step 'store'", "worker 'store'");
            AssertReports(exception, "Pipeline 'two'", "step 'fetch'", "runs after 'ghost'");
            AssertReports(exception, "Pipeline 'three'", "step 'sub'", "child pipeline 'missing'");
            Assert.Equal(4, exception.Errors.Count);
        }

        [Fact]
        public void Should_report_a_cycle_alongside_the_other_problems()
        {
            // PipelineBuilder.Build "throws ... listing every problem"; the cycle is only looked for once all else is valid.
            var pipeline = Pipeline("orders")
                .Step("a", s => s.After("b"))
                .Step("b", s => s.After("a"))
                .Step("c", s => s.Worker("missing"));

            var exception = Invalid(pipeline, Names("a", "b", "c"));

            AssertReports(exception, "step 'c'", "worker 'missing'");
            AssertCycle(CycleIn(AssertReports(exception, StepCycle), StepCycle), "a", "b");
        }
    }

    public sealed class When_a_pipeline_is_a_dag
    {
        private static PipelineDefinition FetchCleanEnrichMergeReport() =>
            Pipeline("etl")
                .Step("fetch")
                .Step("clean", s => s.Consumes("fetch"))
                .Step("enrich", s => s.Consumes("fetch"))
                .Step("merge", s => s.Consumes("clean", "enrich"))
                .Step("report", s => s.After("merge"))
                .Build(Names("fetch", "clean", "enrich", "merge", "report"), NoDefinitions);

        [Fact]
        public void Should_group_the_steps_into_parallel_levels()
        {
            var definition = FetchCleanEnrichMergeReport();

            Assert.Equal(4, definition.Levels.Count);
            Assert.Equal(["fetch"], NamesOf(definition.Levels[0]));
            Assert.Equal(["clean", "enrich"], NamesOf(definition.Levels[1]));
            Assert.Equal(["merge"], NamesOf(definition.Levels[2]));
            Assert.Equal(["report"], NamesOf(definition.Levels[3]));
            Assert.All(definition.Levels.Select((level, i) => (level, i)), x => Assert.All(x.level, s => Assert.Equal(x.i, s.Level)));
        }

        [Fact]
        public void Should_order_the_steps_topologically_with_Index_following_the_order()
        {
            var definition = FetchCleanEnrichMergeReport();

            Assert.Equal(["fetch", "clean", "enrich", "merge", "report"], NamesOf(definition.Steps));
            Assert.Equal([0, 1, 2, 3, 4], definition.Steps.Select(s => s.Index));
        }

        [Fact]
        public void Should_have_report_as_the_only_sink()
        {
            Assert.Equal(["report"], NamesOf(FetchCleanEnrichMergeReport().Sinks));
        }

        [Fact]
        public void Should_list_every_edge()
        {
            var edges = FetchCleanEnrichMergeReport().Edges.ToList();

            Assert.Equal(5, edges.Count);
            Assert.Equal(
                [("clean", "merge"), ("enrich", "merge"), ("fetch", "clean"), ("fetch", "enrich"), ("merge", "report")],
                edges.Order());
        }

        [Fact]
        public void Should_order_steps_declared_out_of_order_after_their_dependencies()
        {
            var definition = Pipeline()
                .Step("report", s => s.After("merge"))
                .Step("merge", s => s.Consumes("clean", "enrich"))
                .Step("enrich", s => s.Consumes("fetch"))
                .Step("clean", s => s.Consumes("fetch"))
                .Step("fetch")
                .Build();

            // Ties (enrich, clean) are broken by declaration order.
            Assert.Equal(["fetch", "enrich", "clean", "merge", "report"], NamesOf(definition.Steps));
            Assert.Equal([0, 1, 2, 3, 4], definition.Steps.Select(s => s.Index));
            Assert.Equal(["enrich", "clean"], NamesOf(definition.Levels[1]));
            Assert.All(definition.Steps, s => Assert.All(s.DependsOn, d => Assert.True(definition[d].Index < s.Index, $"{d} must come before {s.Name}")));
        }

        [Fact]
        public void Should_put_independent_steps_on_level_0_and_make_them_all_sinks()
        {
            var definition = Pipeline().Step("a").Step("b").Step("c").Build();

            Assert.Equal(["a", "b", "c"], NamesOf(Assert.Single(definition.Levels)));
            Assert.Equal(["a", "b", "c"], NamesOf(definition.Sinks));
            Assert.Empty(definition.Edges);
        }

        [Fact]
        public void Should_place_a_step_one_level_below_its_deepest_dependency()
        {
            var definition = Pipeline().Then("a").Then("b").Then("c").Step("late", s => s.After("a", "c")).Build();

            Assert.Equal(3, definition["late"].Level);
            Assert.Equal(["late"], NamesOf(definition.Sinks));
        }

        [Fact]
        public void Should_find_steps_by_name()
        {
            var definition = FetchCleanEnrichMergeReport();

            Assert.Equal("merge", definition["merge"].Name);
            Assert.Null(definition.Find("missing"));
            Assert.Same(definition["clean"], definition.Find("clean"));
            Assert.Throws<KeyNotFoundException>(() => definition["missing"]);
        }
    }

    public sealed class When_steps_are_declared_with_Then_After_and_outputs
    {
        [Fact]
        public void Should_chain_Then_steps_one_after_the_other()
        {
            var definition = Pipeline().Then("a").Then("b").Then("c").Build();

            Assert.Empty(definition["a"].DependsOn);
            Assert.Equal(["a"], definition["b"].DependsOn);
            Assert.Equal(["b"], definition["c"].DependsOn);
            Assert.Equal([0, 1, 2], definition.Steps.Select(s => s.Level));
            Assert.Equal([("a", "b"), ("b", "c")], definition.Edges);
        }

        [Fact]
        public void Should_chain_Then_after_whatever_step_was_declared_last()
        {
            var definition = Pipeline()
                .Step("fetch")
                .Map("each", s => s.Over("fetch"))
                .Then("gather")
                .Child("sub", "other")
                .Then("done")
                .Build();

            Assert.Equal(["each"], definition["gather"].DependsOn);
            Assert.Equal(["sub"], definition["done"].DependsOn);
            Assert.Empty(definition["sub"].DependsOn);
        }

        [Fact]
        public void Should_keep_extra_edges_given_to_a_Then_step()
        {
            var definition = Pipeline().Step("audit").Then("a").Then("b", s => s.After("audit")).Build();

            Assert.Equal(["a", "audit"], definition["b"].DependsOn.Order(StringComparer.Ordinal));
        }

        [Fact]
        public void Should_wait_for_the_producers_of_consumed_outputs()
        {
            var definition = Pipeline()
                .Step("load", s => s.Produces("rows"))
                .Step("prices")
                .Step("sum", s => s.Consumes("rows", "prices"))
                .Build();

            var sum = definition["sum"];
            Assert.Equal(["load", "prices"], sum.DependsOn);
            Assert.Equal(["rows", "prices"], sum.Consumes);
            Assert.Equal("rows", definition["load"].OutputName);
            Assert.Equal("prices", definition["prices"].OutputName);
            Assert.Contains(("load", "sum"), definition.Edges);
            Assert.Contains(("prices", "sum"), definition.Edges);
        }

        [Fact]
        public void Should_keep_explicit_After_edges_without_consuming_anything()
        {
            var definition = Pipeline()
                .Step("load", s => s.Produces("rows"))
                .Step("notify")
                .Step("sum", s => s.Consumes("rows").After("notify"))
                .Build();

            var sum = definition["sum"];
            Assert.Equal(["notify", "load"], sum.DependsOn);
            Assert.Equal(["rows"], sum.Consumes);
            Assert.Contains(("notify", "sum"), definition.Edges);
            Assert.Equal(["sum"], NamesOf(definition.Sinks));
        }

        [Fact]
        public void Should_count_an_edge_given_twice_once()
        {
            var definition = Pipeline().Step("load").Step("sum", s => s.After("load", "load").Consumes("load", "load")).Build();

            Assert.Equal(["load"], definition["sum"].DependsOn);
            Assert.Equal(["load"], definition["sum"].Consumes);
            Assert.Single(definition.Edges);
        }

        [Fact]
        public void Should_carry_the_step_settings_into_the_definition()
        {
            var definition = Pipeline("orders")
                .MaxParallelism(4)
                .Step("fetch", s => s.Worker("fetcher").Timeout(TimeSpan.FromSeconds(30)).OnFailure(FailurePolicy.ContinueIndependent))
                .Step("approve", s => s.SuspensionTimeout(TimeSpan.FromHours(1)).Retry(3, TimeSpan.FromSeconds(2), 3, TimeSpan.FromSeconds(10)))
                .Step("report")
                .DefaultRetry(2, TimeSpan.FromSeconds(1))
                .Step("late")
                .Build();

            Assert.Equal("orders", definition.Name);
            Assert.Equal(4, definition.MaxParallelism);
            Assert.Equal("fetcher", definition["fetch"].Worker);
            Assert.Equal(TimeSpan.FromSeconds(30), definition["fetch"].Timeout);
            Assert.Equal(FailurePolicy.ContinueIndependent, definition["fetch"].OnFailure);
            Assert.Equal(new RetryPolicy(2, TimeSpan.FromSeconds(1)), definition["fetch"].Retry);
            Assert.Equal(TimeSpan.FromHours(1), definition["approve"].SuspensionTimeout);
            Assert.Equal(new RetryPolicy(3, TimeSpan.FromSeconds(2), 3, TimeSpan.FromSeconds(10)), definition["approve"].Retry);
            Assert.Equal(new RetryPolicy(2, TimeSpan.FromSeconds(1)), definition["report"].Retry);
            Assert.Equal(RetryPolicy.None, definition["late"].Retry);
            Assert.Null(definition["late"].Timeout);
            Assert.Equal(TimeSpan.FromHours(24), definition["late"].SuspensionTimeout);
            Assert.Equal(FailurePolicy.FailPipeline, definition["late"].OnFailure);
            Assert.Equal(int.MaxValue, definition["late"].MaxParallelism);
        }
    }

    public sealed class When_a_retry_policy_computes_its_delays
    {
        [Fact]
        public void Should_wait_the_initial_delay_before_the_second_attempt()
        {
            Assert.Equal(TimeSpan.FromSeconds(1), new RetryPolicy(5, TimeSpan.FromSeconds(1)).DelayBefore(2));
        }

        [Fact]
        public void Should_multiply_the_delay_for_each_further_attempt()
        {
            var policy = new RetryPolicy(6, TimeSpan.FromSeconds(1), 3);

            Assert.Equal(
                [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(9), TimeSpan.FromSeconds(27), TimeSpan.FromSeconds(81)],
                Enumerable.Range(2, 5).Select(policy.DelayBefore));
        }

        [Fact]
        public void Should_cap_the_delay_at_MaxDelay()
        {
            var policy = new RetryPolicy(10, TimeSpan.FromSeconds(1), 2, TimeSpan.FromSeconds(5));

            Assert.Equal(
                [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5)],
                Enumerable.Range(2, 5).Select(policy.DelayBefore));
            Assert.Equal(TimeSpan.FromSeconds(5), policy.DelayBefore(10));
        }

        [Fact]
        public void Should_keep_a_constant_delay_with_multiplier_1()
        {
            var policy = new RetryPolicy(4, TimeSpan.FromMilliseconds(250), 1);

            Assert.All(Enumerable.Range(2, 3).Select(policy.DelayBefore), d => Assert.Equal(TimeSpan.FromMilliseconds(250), d));
        }

        [Fact]
        public void Should_not_overflow_after_many_attempts()
        {
            var uncapped = new RetryPolicy(int.MaxValue, TimeSpan.FromSeconds(1));
            var capped = uncapped with { MaxDelay = TimeSpan.FromMinutes(10) };

            Assert.True(uncapped.DelayBefore(10_000) > TimeSpan.FromDays(365));
            Assert.Equal(TimeSpan.FromMinutes(10), capped.DelayBefore(10_000));
        }

        [Fact]
        public void Should_not_wait_with_the_default_policy()
        {
            Assert.Equal(1, RetryPolicy.None.MaxAttempts);
            Assert.Equal(TimeSpan.Zero, RetryPolicy.None.DelayBefore(2));
        }
    }

    private sealed class NoopHandler : IStepHandler
    {
        public Task<StepResult> HandleAsync(StepContext context) => Task.FromResult(StepResult.Success());
    }
    public sealed class When_a_definition_has_versions
    {
        private static PipelineBuilder Orders(Action<StepBuilder>? clean = null) =>
            Pipeline("orders").Then("fetch", s => s.Worker("w")).Then("clean", s =>
            {
                s.Worker("w");
                clean?.Invoke(s);
            });

        [Fact]
        public void Should_derive_the_same_version_from_the_same_shape_and_another_from_any_change()
        {
            var version = Orders().Build().Version;

            Assert.Matches("^[0-9a-f]{12}$", version);
            Assert.Equal(version, Orders().Build().Version);
            // The input schema is checked before a start and decides nothing after it.
            Assert.Equal(version, Orders().Input(i => i.Required("id", InputKind.String)).Build().Version);
            Assert.NotEqual(version, Orders(s => s.Retry(3, TimeSpan.FromSeconds(1))).Build().Version);
            Assert.NotEqual(version, Orders(s => s.Timeout(TimeSpan.FromMinutes(1))).Build().Version);
            Assert.NotEqual(version, Orders(s => s.OnFailure(FailurePolicy.ContinueIndependent)).Build().Version);
            Assert.NotEqual(version, Orders(s => s.Worker("other")).Build().Version);
            Assert.NotEqual(version, Orders().Then("ship", s => s.Worker("w")).Build().Version);
            Assert.NotEqual(version, Pipeline("orders").Step("fetch", s => s.Worker("w")).Step("clean", s => s.Worker("w")).Build().Version);
            Assert.NotEqual(version, Orders().MaxParallelism(1).Build().Version);
        }

        [Fact]
        public void Should_take_a_version_given_by_name()
        {
            Assert.Equal("2024.06-b", Orders().Version("2024.06-b").Build().Version);
            AssertReports(Invalid(Orders().Version("no spaces")), "Pipeline 'orders'", "the version 'no spaces' is not usable");
            AssertReports(Invalid(Orders().Version(new string('v', 65))), "is not usable");
        }

        [Fact]
        public void Should_start_new_pipelines_on_the_version_not_draining_and_keep_the_draining_one_for_its_pipelines()
        {
            var registry = BusFlow(b => b
                .AddRemoteWorker("w")
                .AddPipeline("orders", p => p.Then("fetch", s => s.Worker("w")).Then("ship", s => s.Worker("w")).Version("1").Draining())
                .AddPipeline("orders", p => p.Then("fetch", s => s.Worker("w")).Then("announce", s => s.Worker("w")).Version("2"))).Build();

            Assert.Equal("2", registry.Find("orders")!.Version);
            Assert.Equal(["fetch", "ship"], NamesOf(registry.Find("orders", "1")!.Steps));
            Assert.True(registry.Find("orders", "1")!.Draining);
            Assert.Null(registry.Find("orders", "3"));
            // A pipeline that started before versions were recorded is decided on the current one.
            Assert.Equal("2", registry.Find("orders", "")!.Version);
            Assert.Equal(["orders"], registry.Definitions.Select(d => d.Name));
            Assert.Equal(["1", "2"], registry.Versions.Select(d => d.Version).Order(StringComparer.Ordinal));
        }

        private static PipelineRegistry Releases() => BusFlow(b => b
            .AddRemoteWorker("w")
            .AddPipeline("orders", p => p.Then("fetch", s => s.Worker("w")).Then("ship", s => s.Worker("w")).Version("1").Draining())
            .AddPipeline("orders", p => p.Then("fetch", s => s.Worker("w")).Then("announce", s => s.Worker("w")).Version("2"))).Build();

        private static PipelineDecider Decider(PipelineRegistry registry) =>
            new(registry, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<PipelineStateMachine>.Instance);

        /// <summary>A pipeline of <c>orders</c> with <c>fetch</c> running and <c>ship</c> pending, on <paramref name="version"/>.</summary>
        private static PipelineState Running(string version, Guid execution, params string[] steps) => new()
        {
            CorrelationId = Guid.NewGuid(),
            Definition = "orders",
            DefinitionVersion = version,
            Status = PipelineStatus.Running,
            LastSeq = 2,
            ParentPipelineId = Guid.NewGuid(),
            Steps = [.. steps.Select((name, i) => new StepRun
            {
                Name = name,
                Status = i == 0 ? StepStatus.Running : StepStatus.Pending,
                Items = i == 0 ? [new WorkItem { Status = WorkStatus.Running, Attempt = 1, ExecutionId = execution }] : [],
            })],
        };

        [Fact]
        public void Should_decide_a_pipeline_started_before_versions_on_the_version_with_its_steps_and_record_it()
        {
            var registry = Releases();
            var state = Running("", Guid.NewGuid(), "fetch", "ship");

            Assert.Equal("1", registry.Deciding(state)!.Version);
            Decider(registry).Decide(state, new WakePipeline(state.CorrelationId));
            Assert.Equal("1", state.DefinitionVersion);
            Assert.Equal(PipelineStatus.Running, state.Status);
        }

        [Fact]
        public void Should_not_decide_a_pipeline_whose_named_version_has_other_steps_here()
        {
            var state = Running("2", Guid.NewGuid(), "fetch", "ship");

            var unavailable = Assert.Throws<DefinitionUnavailableException>(() => Decider(Releases()).Decide(state, new WakePipeline(state.CorrelationId)));
            Assert.Contains("a changed definition must get another version", unavailable.Message, StringComparison.Ordinal);
            Assert.Equal((state.CorrelationId, "orders", "2"), (unavailable.PipelineId, unavailable.Definition, unavailable.Version));
        }

        [Fact]
        public void Should_leave_a_pipeline_on_a_missing_version_undecided_then_fail_it_stopping_what_runs_and_telling_its_parent()
        {
            var execution = Guid.NewGuid();
            var state = Running("0", execution, "fetch", "ship");
            var decider = Decider(Releases());

            Assert.Throws<DefinitionUnavailableException>(() => decider.Decide(state, new WakePipeline(state.CorrelationId)));
            Assert.Equal((PipelineStatus.Running, 2L), (state.Status, state.LastSeq));

            var decision = decider.Decide(state, new WakePipeline(state.CorrelationId), waitedLongEnough: true);
            var failed = Assert.IsType<PipelineFailed>(Assert.Single(decision.Events));
            Assert.Equal(("unknown_version", 3L, (string?)null), (failed.Error.Kind, failed.Seq, failed.FailedStep));
            Assert.Equal([execution], Assert.Single(decision.StepCancels).ExecutionIds);
            Assert.Equal(PipelineStatus.Failed, decision.ParentNotice!.Outcome);
            Assert.Equal(PipelineStatus.Failed, state.Status);
        }

        [Fact]
        public void Should_cancel_a_pipeline_on_a_missing_version_at_once()
        {
            var execution = Guid.NewGuid();
            var state = Running("0", execution, "fetch", "ship");

            var decision = Decider(Releases()).Decide(state, new CancelPipeline { PipelineId = state.CorrelationId, Reason = "old" });

            Assert.Equal("old", Assert.IsType<PipelineCancelled>(Assert.Single(decision.Events)).Reason);
            Assert.Equal([execution], Assert.Single(decision.StepCancels).ExecutionIds);
            Assert.Equal(PipelineStatus.Cancelled, state.Status);
        }

        [Fact]
        public void Should_refuse_versions_of_one_name_unless_exactly_one_takes_new_starts_and_each_is_registered_once()
        {
            AssertReports(
                Invalid(b => b.AddRemoteWorker("w").AddPipeline("orders", p => p.Step("a", s => s.Worker("w")).Draining())),
                "'orders' is registered only with Draining()");
            AssertReports(
                Invalid(b => b.AddRemoteWorker("w").AddPipeline("sub", p => p.Step("a", s => s.Worker("w")).Draining()).AddPipeline("orders", p => p.Child("c", "sub"))),
                "child pipeline 'sub'");
            AssertReports(
                Invalid(b => b.AddRemoteWorker("w").AddPipeline("orders", p => p.Step("a", s => s.Worker("w")).Version("1")).AddPipeline("orders", p => p.Step("b", s => s.Worker("w")).Version("2"))),
                "'orders' is registered in 2 versions, 2 of them for new starts", "Draining()");
            AssertReports(
                Invalid(b => b.AddRemoteWorker("w").AddPipeline("orders", p => p.Step("a", s => s.Worker("w")).Version("1").Draining()).AddPipeline("orders", p => p.Step("b", s => s.Worker("w")).Version("2").Draining())),
                "'orders' is registered in 2 versions, 0 of them for new starts");
            AssertReports(
                Invalid(b => b.AddRemoteWorker("w").AddPipeline("orders", p => p.Step("a", s => s.Worker("w")).Draining()).AddPipeline("orders", p => p.Step("a", s => s.Worker("w")))),
                "'orders' is registered 2 times with the version");
        }
    }
}
