// SPDX-License-Identifier: GPL-2.0-or-later
//! The kernel Image's size report: each section the flat Image holds, and
//! how much each can still grow before the Image grows by a page and
//! before it outgrows its budget. `cargo xtask build` prints it for both
//! kernels and refuses a shipped kernel over its budget with it.
//!
//! Why per section: `linker/guest-kernel.ld` starts every section on a
//! 4 KiB page (the MMU maps each with its own permissions), and the Image
//! (`llvm-objcopy -O binary`) holds the padding between them. So a
//! section that is not the last grows the Image not byte for byte but a
//! page at a time, when it crosses its page's end: a few hundred bytes of
//! code can cost 4 KiB. The last section (`.rodata` today) grows it byte
//! for byte.

use anyhow::{ensure, Context, Result};
use std::fmt;

/// What the linker script aligns the Image's sections to.
pub const PAGE: u64 = 4096;

/// A section the flat Image holds: allocated, with contents (not `.bss`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSection {
    pub name: String,
    pub address: u64,
    pub size: u64,
}

/// The sections of a little-endian ELF64 file that the flat Image holds,
/// in address order.
pub fn image_sections(elf: &[u8]) -> Result<Vec<ImageSection>> {
    ensure!(
        elf.len() > 64 && elf[..4] == *b"\x7fELF" && elf[4] == 2 && elf[5] == 1,
        "not a little-endian ELF64 file"
    );
    let bytes_at = |at: usize, len: usize| {
        elf.get(at..at + len)
            .context("truncated ELF section header table")
    };
    let u16_at = |at| Ok::<_, anyhow::Error>(u16::from_le_bytes(bytes_at(at, 2)?.try_into()?));
    let u32_at = |at| Ok::<_, anyhow::Error>(u32::from_le_bytes(bytes_at(at, 4)?.try_into()?));
    let u64_at = |at| Ok::<_, anyhow::Error>(u64::from_le_bytes(bytes_at(at, 8)?.try_into()?));
    let table = usize::try_from(u64_at(0x28)?)?;
    let entry_size = usize::from(u16_at(0x3a)?);
    let entries = usize::from(u16_at(0x3c)?);
    let names_header = table + usize::from(u16_at(0x3e)?) * entry_size;
    let names = usize::try_from(u64_at(names_header + 0x18)?)?;
    const SHT_NOBITS: u32 = 8;
    const SHF_ALLOC: u64 = 2;
    let mut sections = Vec::new();
    for header in (0..entries).map(|index| table + index * entry_size) {
        let (kind, flags, size) = (
            u32_at(header + 4)?,
            u64_at(header + 8)?,
            u64_at(header + 0x20)?,
        );
        if kind == SHT_NOBITS || flags & SHF_ALLOC == 0 || size == 0 {
            continue;
        }
        let name_at = names + usize::try_from(u32_at(header)?)?;
        let name = elf
            .get(name_at..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .context("section name outside the file")?;
        sections.push(ImageSection {
            name: String::from_utf8_lossy(name).into_owned(),
            address: u64_at(header + 0x10)?,
            size,
        });
    }
    sections.sort_by_key(|section| section.address);
    Ok(sections)
}

/// How much one section can grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionRoom {
    pub name: String,
    pub size: u64,
    /// Bytes before the section crosses its last page's end. For all but
    /// the last section, the Image then grows by a whole page.
    pub before_next_page: u64,
    /// Bytes the section can grow before the Image is over its budget;
    /// `None` without a budget.
    pub within_budget: Option<u64>,
}

/// The Image's size, its budget, and each section's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeReport {
    /// The flat Image's length: from the first section's start to the
    /// last one's end.
    pub image_bytes: u64,
    pub budget: Option<u64>,
    pub sections: Vec<SectionRoom>,
}

fn page_end(address: u64) -> u64 {
    address.next_multiple_of(PAGE)
}

impl SizeReport {
    /// The report for an Image made of `sections` (in address order, each
    /// starting on a page, as the linker script lays them out).
    pub fn new(sections: &[ImageSection], budget: Option<u64>) -> SizeReport {
        let (Some(first), Some(last)) = (sections.first(), sections.last()) else {
            return SizeReport {
                image_bytes: 0,
                budget,
                sections: Vec::new(),
            };
        };
        let image_bytes = last.address + last.size - first.address;
        let spare = budget.map(|budget| budget.saturating_sub(image_bytes));
        let rooms = sections
            .iter()
            .enumerate()
            .map(|(index, section)| {
                let end = section.address + section.size;
                let before_next_page = page_end(end) - end;
                let is_last = index + 1 == sections.len();
                SectionRoom {
                    name: section.name.clone(),
                    size: section.size,
                    before_next_page,
                    within_budget: spare.map(|spare| {
                        if is_last {
                            // The Image ends with it: byte for byte.
                            spare
                        } else {
                            // What is left of its page, then whole pages.
                            before_next_page + spare / PAGE * PAGE
                        }
                    }),
                }
            })
            .collect();
        SizeReport {
            image_bytes,
            budget,
            sections: rooms,
        }
    }

    /// An error that explains the page padding if the Image is over its
    /// budget.
    pub fn check(&self) -> Result<()> {
        let Some(budget) = self.budget else {
            return Ok(());
        };
        ensure!(
            self.image_bytes <= budget,
            "the Image is {} bytes, {} over its budget of {} bytes.\n\
             Its sections start on 4 KiB pages (linker/guest-kernel.ld), so a section that \
             crosses its page's end grows the Image by a whole page: a few hundred bytes of \
             code can cost 4 KiB. The sizes per section:\n{self}",
            group(self.image_bytes),
            group(self.image_bytes - budget),
            group(budget),
        );
        Ok(())
    }
}

/// The report's table: a heading, then one line per section.
impl fmt::Display for SizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "      headroom (each section starts on a 4 KiB page):")?;
        let last = self.sections.len().saturating_sub(1);
        for (index, room) in self.sections.iter().enumerate() {
            let role = match room.name.as_str() {
                ".text" => "(code)",
                ".rodata" | ".data" => "(data)",
                _ => "",
            };
            write!(
                f,
                "        {:<8} {role:<6} {:>7} bytes: {:>6} left in its last page",
                room.name,
                group(room.size),
                group(room.before_next_page)
            )?;
            f.write_str(if index == last {
                " (it ends the Image, which grows byte for byte)"
            } else {
                ", then the Image grows by 4 KiB"
            })?;
            if let Some(within) = room.within_budget {
                write!(f, "; {} within the budget", group(within))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// `1234567` as `1,234,567`.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, address: u64, size: u64) -> ImageSection {
        ImageSection {
            name: name.to_string(),
            address,
            size,
        }
    }

    /// The layout of issue 20: `.text` 20 bytes before its page's end,
    /// `.rodata` on the next page.
    fn layout(text: u64, rodata: u64) -> Vec<ImageSection> {
        let base = 0x4020_0000;
        vec![
            section(".text", base, text),
            section(".rodata", base + page_end(text), rodata),
        ]
    }

    #[test]
    fn headroom_per_section() {
        let report = SizeReport::new(&layout(15 * PAGE - 20, 1000), Some(80 * 1024));
        assert_eq!(report.image_bytes, 15 * PAGE + 1000);
        let [text, rodata] = &report.sections[..] else {
            panic!("{report:?}")
        };
        assert_eq!((text.size, text.before_next_page), (15 * PAGE - 20, 20));
        // 20 bytes, then the 4 whole pages the budget has left.
        let spare = 80 * 1024 - (15 * PAGE + 1000);
        assert_eq!(text.within_budget, Some(20 + 4 * PAGE));
        assert_eq!(rodata.before_next_page, PAGE - 1000);
        assert_eq!(rodata.within_budget, Some(spare));
        report.check().unwrap();
    }

    /// What the headroom promises holds: code that grows by `within_budget`
    /// fits, one byte more does not; code that grows past
    /// `before_next_page` costs a whole page.
    #[test]
    fn the_headroom_is_exact() {
        let budget = Some(80 * 1024);
        for text in [PAGE - 20, 10 * PAGE, 12 * PAGE + 1, 16 * PAGE - 4000] {
            let report = SizeReport::new(&layout(text, 3000), budget);
            let room = &report.sections[0];
            let grown = |by| SizeReport::new(&layout(text + by, 3000), budget);
            assert!(grown(room.within_budget.unwrap()).check().is_ok());
            assert!(grown(room.within_budget.unwrap() + 1).check().is_err());
            assert_eq!(grown(room.before_next_page).image_bytes, report.image_bytes);
            assert_eq!(
                grown(room.before_next_page + 1).image_bytes,
                report.image_bytes + PAGE
            );
            let rodata = &report.sections[1];
            let more_data =
                SizeReport::new(&layout(text, 3000 + rodata.within_budget.unwrap()), budget);
            assert_eq!(more_data.image_bytes, 80 * 1024);
        }
    }

    /// Issue 20's newcomer: about 400 bytes of code, 20 bytes before the
    /// page's end, grow the Image by a page, and the refusal says why.
    #[test]
    fn overflow_explains_the_page_padding() {
        let budget = Some(16 * PAGE);
        let before = SizeReport::new(&layout(15 * PAGE - 20, 200), budget);
        before.check().unwrap();
        let after = SizeReport::new(&layout(15 * PAGE + 380, 200), budget);
        assert_eq!(after.image_bytes, before.image_bytes + PAGE);
        let message = after.check().unwrap_err().to_string();
        for expected in [
            "over its budget",
            "a whole page",
            "4 KiB",
            ".text",
            ".rodata",
        ] {
            assert!(message.contains(expected), "{expected:?} in {message}");
        }
    }

    #[test]
    fn without_a_budget_nothing_is_refused() {
        let report = SizeReport::new(&layout(100 * PAGE, 5000), None);
        assert!(report.check().is_ok());
        assert!(report
            .sections
            .iter()
            .all(|room| room.within_budget.is_none()));
        assert!(!report.to_string().contains("budget"));
    }

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(81920), "81,920");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    /// The sections of the kernel `cargo xtask build` wrote (skipped before
    /// the first build) add up to its Image.
    #[test]
    fn the_built_kernel_sections_make_its_image() {
        let repo = crate::repo::Repo::locate();
        for flavor in [
            crate::build::kernel::Flavor::Shipped,
            crate::build::kernel::Flavor::WithTests,
        ] {
            let (Ok(elf), Ok(image)) = (
                std::fs::read(repo.kernel_elf(flavor)),
                std::fs::read(repo.kernel_image_of(flavor)),
            ) else {
                eprintln!("{flavor:?} not built yet: skipped");
                continue;
            };
            let sections = image_sections(&elf).unwrap();
            assert_eq!(sections[0].name, ".text");
            assert!(sections.iter().all(|s| s.address.is_multiple_of(PAGE)));
            let report = SizeReport::new(&sections, crate::build::kernel::budget(flavor));
            assert_eq!(report.image_bytes, image.len() as u64);
        }
    }
}
