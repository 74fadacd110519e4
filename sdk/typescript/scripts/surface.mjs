// The package's public surface as its declarations state it, for the test that holds it
// against the Python SDK's (tests/test_sdk_typescript.py): each export with its kind, and
// each exported class's public members, static and instance.
//
//   node scripts/surface.mjs        (after a build; prints JSON)

import { fileURLToPath } from "node:url"
import ts from "typescript"

const entry = fileURLToPath(new URL("../dist/esm/index.d.ts", import.meta.url))
const program = ts.createProgram([entry], { strict: true, noEmit: true })
const checker = program.getTypeChecker()
const source = program.getSourceFile(entry)
if (!source) throw new Error(`no ${entry}: run npm run build first`)

function isPublic(symbol) {
  const declaration = symbol.declarations?.[0]
  if (!declaration || ts.isPrivateIdentifier(declaration.name ?? {})) return false
  const flags = ts.getCombinedModifierFlags(declaration)
  return !(flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected))
}

function name(symbol) {
  const escaped = String(symbol.escapedName)
  const wellKnown = /^__@(\w+)@\d+$/.exec(escaped)
  return wellKnown ? `[Symbol.${wellKnown[1]}]` : symbol.getName()
}

// The properties of a type, as the checker sees them: also members named by a well-known
// symbol ([Symbol.asyncIterator]), which a class's own member table leaves out.
function members(type) {
  return checker.getPropertiesOfType(type).filter(isPublic).map(name)
    .filter((n) => n !== "prototype" && !n.startsWith("__#")).sort()
}

const exports = {}
const classes = {}
for (const exported of checker.getExportsOfModule(checker.getSymbolAtLocation(source))) {
  const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported
  const kind = symbol.flags & ts.SymbolFlags.Class ? "class"
    : symbol.flags & ts.SymbolFlags.Value ? "value" : "type"
  exports[exported.getName()] = kind
  if (kind === "class") {
    classes[exported.getName()] = {
      static: members(checker.getTypeOfSymbolAtLocation(symbol, source)),
      instance: members(checker.getDeclaredTypeOfSymbol(symbol)),
    }
  }
}
console.log(JSON.stringify({ exports, classes }, null, 1))
