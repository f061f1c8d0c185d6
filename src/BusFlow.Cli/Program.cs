using System.CommandLine;
using System.CommandLine.Invocation;
using BusFlow.Cli;

// busflow: start or attach to a pipeline and watch it in the terminal (docs/clients.md).
// Exit codes: 0 done (completed, answered, cancel requested), 1 the pipeline failed or was
// cancelled, 2 a usage or API error (said on stderr, with what to do), 130 interrupted.
var root = CliCommands.Build();
var parse = root.Parse(args);
if (parse.Errors.Count > 0 && parse.Action is ParseErrorAction)
{
    foreach (var error in parse.Errors)
    {
        Console.Error.WriteLine($"busflow: {error.Message}");
    }

    Console.Error.WriteLine($"Run 'busflow {string.Join(' ', CommandPath(parse.CommandResult.Command))} --help' for what it takes.".Replace("busflow busflow", "busflow", StringComparison.Ordinal));
    return CliCommands.UsageError;
}

return await parse.InvokeAsync();

static IEnumerable<string> CommandPath(Command command) => command.Parents.OfType<Command>().SelectMany(CommandPath).Append(command.Name);
