//! Symbolising kernel backtraces: return addresses to function names, from the ELF symbol
//! table of the kernel that printed them.

use object::{Object, ObjectSymbol, SymbolKind};
use std::path::Path;

/// The function symbols of an ELF file, sorted by address.
pub struct Symbols {
    functions: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Reads the symbol table of the ELF file at `path`.
    pub fn load(path: &Path) -> std::io::Result<Symbols> {
        let data = std::fs::read(path)?;
        let file = object::File::parse(&*data).map_err(std::io::Error::other)?;
        let mut functions: Vec<_> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| {
                let name = s.name().ok()?;
                Some((s.address(), s.size(), format!("{:#}", rustc_demangle::demangle(name))))
            })
            .collect();
        functions.sort();
        Ok(Symbols { functions })
    }

    /// The function containing `address`, with the offset into it (`name+0x1c`).
    pub fn lookup(&self, address: u64) -> Option<String> {
        let i = self.functions.partition_point(|(start, _, _)| *start <= address).checked_sub(1)?;
        let (start, size, name) = &self.functions[i];
        // A return address points just past the call, so it may equal the function's end.
        (address <= start + (*size).max(1)).then(|| format!("{name}+{:#x}", address - start))
    }
}
