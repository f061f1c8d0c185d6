using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace BusFlow.Store.Migrations.Sqlite.Migrations
{
    /// <inheritdoc />
    public partial class DefinitionVersions : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "DefinitionVersion",
                table: "busflow_pipelines",
                type: "TEXT",
                maxLength: 64,
                nullable: false,
                defaultValue: "");

            migrationBuilder.CreateIndex(
                name: "IX_busflow_pipelines_Status_Definition_DefinitionVersion",
                table: "busflow_pipelines",
                columns: new[] { "Status", "Definition", "DefinitionVersion" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_busflow_pipelines_Status_Definition_DefinitionVersion",
                table: "busflow_pipelines");

            migrationBuilder.DropColumn(
                name: "DefinitionVersion",
                table: "busflow_pipelines");
        }
    }
}
