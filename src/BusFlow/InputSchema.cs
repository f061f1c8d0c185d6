using System.Text.Json;

namespace BusFlow;

/// <summary>The JSON kinds an input property may take; combine with <c>|</c>.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1720:Identifier contains type name", Justification = "JSON's own names for its kinds.")]
[Flags]
public enum InputKind
{
    String = 1,
    Number = 2,
    Boolean = 4,
    Array = 8,
    Object = 16,
    Null = 32,
    Any = String | Number | Boolean | Array | Object | Null,
}

/// <summary>One property of a pipeline's input.</summary>
public sealed record InputProperty(string Name, InputKind Kind, bool Required);

/// <summary>
/// What input a pipeline accepts: a JSON object with named properties of given kinds. Checked by
/// the edge before a start is accepted, so a caller learns at once what is wrong.
/// </summary>
public sealed class InputSchema
{
    private readonly List<InputProperty> _properties = [];

    public IReadOnlyList<InputProperty> Properties => _properties;

    /// <summary>Whether properties not declared are refused (default false: they are passed along).</summary>
    public bool Closed { get; private set; }

    public InputSchema Required(string name, InputKind kind)
    {
        _properties.Add(new InputProperty(name, kind, Required: true));
        return this;
    }

    public InputSchema Optional(string name, InputKind kind)
    {
        _properties.Add(new InputProperty(name, kind, Required: false));
        return this;
    }

    /// <summary>Refuses properties that are not declared.</summary>
    public InputSchema NoOtherProperties()
    {
        Closed = true;
        return this;
    }

    /// <summary>Every way the input fails the schema; empty when it fits.</summary>
    public IReadOnlyList<string> Validate(JsonElement? input)
    {
        var errors = new List<string>();
        if (input is not { ValueKind: JsonValueKind.Object } value)
        {
            if (_properties.Any(p => p.Required) || input is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) })
            {
                errors.Add($"the input must be a JSON object{(_properties.Count > 0 ? " with " + Describe() : "")}");
            }

            return errors;
        }

        foreach (var property in _properties)
        {
            if (!value.TryGetProperty(property.Name, out var actual))
            {
                if (property.Required)
                {
                    errors.Add($"'{property.Name}' is required ({Kinds(property.Kind)})");
                }

                continue;
            }

            if (!property.Kind.HasFlag(KindOf(actual)))
            {
                errors.Add($"'{property.Name}' must be {Kinds(property.Kind)}, not {Kinds(KindOf(actual))}");
            }
        }

        if (Closed)
        {
            foreach (var extra in value.EnumerateObject().Where(p => _properties.All(d => d.Name != p.Name)))
            {
                errors.Add($"'{extra.Name}' is not an input of this pipeline");
            }
        }

        return errors;
    }

    private string Describe() => string.Join(", ", _properties.Select(p => $"{p.Name} ({Kinds(p.Kind)}{(p.Required ? "" : ", optional")})"));

    private static InputKind KindOf(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => InputKind.String,
        JsonValueKind.Number => InputKind.Number,
        JsonValueKind.True or JsonValueKind.False => InputKind.Boolean,
        JsonValueKind.Array => InputKind.Array,
        JsonValueKind.Object => InputKind.Object,
        _ => InputKind.Null,
    };

    private static string Kinds(InputKind kind) =>
        kind == InputKind.Any ? "any value" : string.Join(" or ", Enum.GetValues<InputKind>().Where(k => k != InputKind.Any && kind.HasFlag(k)).Select(k => k.ToString().ToLowerInvariant()));
}
