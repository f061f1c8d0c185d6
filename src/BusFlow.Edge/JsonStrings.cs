using System.Globalization;
using System.Text.Json;

namespace BusFlow.Edge;

/// <summary>
/// Finds strings a client sent that are not Unicode text: JSON escapes of lone surrogates
/// (<c>"\udc00"</c>) parse, but cannot be read as a string, stored or sent on, so the edge refuses
/// the whole request or frame up front instead of failing later with a 500 or an aborted socket.
/// </summary>
internal static class JsonStrings
{
    /// <summary>The JSON path of the first string or property name that is not valid Unicode, or null.</summary>
    public static string? FindInvalid(JsonElement element, string path = "$")
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return IsText(element) ? null : path;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return path + " (a property name)";
                    }

                    if (FindInvalid(property.Value, path + "." + name) is { } found)
                    {
                        return found;
                    }
                }

                return null;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    if (FindInvalid(item, path + "[" + index.ToString(CultureInfo.InvariantCulture) + "]") is { } found)
                    {
                        return found;
                    }

                    index++;
                }

                return null;
            default:
                return null;
        }
    }

    private static bool IsText(JsonElement value)
    {
        try
        {
            _ = value.GetString();
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
