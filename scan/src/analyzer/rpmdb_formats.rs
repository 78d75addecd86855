//! The two older rpm database formats, down to their header blobs: BerkeleyDB hash files
//! (`/var/lib/rpm/Packages`: RHEL/CentOS ≤ 8, Amazon Linux 2) and rpm's own NDB
//! (`Packages.db`: SUSE). Both are read from memory, every offset checked; the layouts follow
//! rpm's `lib/backend/ndb/rpmpkg.c`, Berkeley DB's `dbinc/db_page.h` and go-rpmdb, which Trivy
//! uses. No crate reads either format.

/// Berkeley DB hash metadata magic (little-endian files; big-endian ones read it swapped).
const BDB_HASH_MAGIC: u32 = 0x0006_1561;
const BDB_PAGE_HEADER: usize = 26;
/// A sorted (13) or pre-4.6 unsorted (2) hash page.
const BDB_HASH_PAGES: [u8; 2] = [13, 2];
const BDB_OVERFLOW_PAGE: u8 = 7;
const BDB_METADATA_PAGE: u8 = 8;
/// An item stored on the page itself (H_KEYDATA): small headers.
const BDB_INLINE_ITEM: u8 = 1;
/// An item stored on overflow pages (H_OFFPAGE): how rpm stores most headers.
const BDB_OFF_PAGE_ITEM: u8 = 3;

const NDB_HEADER_MAGIC: u32 = u32::from_le_bytes(*b"RpmP");
const NDB_SLOT_MAGIC: u32 = u32::from_le_bytes(*b"Slot");
const NDB_BLOB_MAGIC: u32 = u32::from_le_bytes(*b"BlbS");
const NDB_SLOT_PAGE: usize = 4096;
const NDB_SLOT_SIZE: usize = 16;
const NDB_BLOCK: usize = 16;
/// rpm's own limit on slot pages; more means a corrupt file, not a big one.
const NDB_MAX_SLOT_PAGES: usize = 2048;

/// Which rpm database a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SQLite (rpm ≥ 4.16 default).
    Sqlite,
    /// Berkeley DB hash.
    BerkeleyDb,
    /// rpm's NDB.
    Ndb,
}

/// Tells the format from the file's first bytes.
pub fn detect(data: &[u8]) -> Option<Format> {
    if data.starts_with(b"SQLite format 3\0") {
        return Some(Format::Sqlite);
    }
    if data.get(..4).is_some_and(|m| m == b"RpmP") {
        return Some(Format::Ndb);
    }
    let magic = data.get(12..16)?;
    let le = u32::from_le_bytes(magic.try_into().ok()?);
    let be = u32::from_be_bytes(magic.try_into().ok()?);
    (le == BDB_HASH_MAGIC || be == BDB_HASH_MAGIC).then_some(Format::BerkeleyDb)
}

struct Endian {
    big: bool,
}

impl Endian {
    fn u16(&self, b: &[u8], at: usize) -> Result<u16, String> {
        let bytes: [u8; 2] = b
            .get(at..at + 2)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("truncated at byte {at}"))?;
        Ok(if self.big {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    }

    fn u32(&self, b: &[u8], at: usize) -> Result<u32, String> {
        let bytes: [u8; 4] = b
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("truncated at byte {at}"))?;
        Ok(if self.big {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }
}

fn usize_of(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Every header blob of a Berkeley DB hash rpmdb (keys are package numbers; values the headers).
pub fn bdb_blobs(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let magic = data.get(12..16).ok_or("shorter than a metadata page")?;
    let big = u32::from_le_bytes(magic.try_into().map_err(|_| "short magic")?) != BDB_HASH_MAGIC;
    let e = Endian { big };
    if e.u32(data, 12)? != BDB_HASH_MAGIC {
        return Err("not a Berkeley DB hash database".into());
    }
    let page_size = usize_of(e.u32(data, 20)?);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("unexpected page size {page_size}"));
    }
    if data.get(24) != Some(&0) {
        return Err("encrypted databases are not supported".into());
    }
    if data.get(25) != Some(&BDB_METADATA_PAGE) {
        return Err("the first page is not hash metadata".into());
    }
    let last_page = usize_of(e.u32(data, 32)?);
    let page = |n: usize| -> Result<&[u8], String> {
        n.checked_mul(page_size)
            .and_then(|start| data.get(start..start + page_size))
            .ok_or_else(|| format!("page {n} lies beyond the end of the file"))
    };
    let mut blobs = Vec::new();
    for n in 0..=last_page {
        let Ok(p) = page(n) else { break };
        if !BDB_HASH_PAGES.contains(&p[25]) {
            continue;
        }
        let entries = usize::from(e.u16(p, 20)?);
        if entries % 2 != 0 {
            return Err(format!("hash page {n} has an odd item count"));
        }
        // Items come in key/value pairs; their offsets follow the page header, and items fill
        // the page from its end, so an item ends where the one before it in the index starts.
        for pair in 0..entries / 2 {
            let index = pair * 2 + 1;
            let value_at = usize::from(e.u16(p, BDB_PAGE_HEADER + index * 2)?);
            let value_end = usize::from(e.u16(p, BDB_PAGE_HEADER + (index - 1) * 2)?);
            if p.get(value_at) == Some(&BDB_INLINE_ITEM) {
                let inline = p
                    .get(value_at + 1..value_end.max(value_at + 1))
                    .ok_or_else(|| format!("item {index} of page {n} runs past the page"))?;
                blobs.push(inline.to_vec());
                continue;
            }
            if p.get(value_at) != Some(&BDB_OFF_PAGE_ITEM) {
                continue;
            }
            let mut next = usize_of(e.u32(p, value_at + 4)?);
            let length = usize_of(e.u32(p, value_at + 8)?);
            let mut blob = Vec::with_capacity(length.min(data.len()));
            let mut hops = 0;
            while next != 0 {
                hops += 1;
                if hops > last_page + 1 {
                    return Err(format!("overflow chain from page {n} loops"));
                }
                let o = page(next)?;
                if o[25] != BDB_OVERFLOW_PAGE {
                    return Err(format!("page {next} should be an overflow page"));
                }
                let following = usize_of(e.u32(o, 16)?);
                let used = if following == 0 {
                    usize::from(e.u16(o, 22)?)
                } else {
                    page_size - BDB_PAGE_HEADER
                };
                let chunk = o
                    .get(BDB_PAGE_HEADER..BDB_PAGE_HEADER + used)
                    .ok_or_else(|| format!("overflow page {next} claims more than a page"))?;
                blob.extend_from_slice(chunk);
                next = following;
            }
            blob.truncate(length);
            blobs.push(blob);
        }
    }
    Ok(blobs)
}

/// Every header blob of an NDB `Packages.db`.
pub fn ndb_blobs(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let e = Endian { big: false };
    if e.u32(data, 0)? != NDB_HEADER_MAGIC {
        return Err("not an rpm NDB database".into());
    }
    if e.u32(data, 4)? != 0 {
        return Err(format!("unsupported NDB version {}", e.u32(data, 4)?));
    }
    let slot_pages = usize_of(e.u32(data, 12)?);
    if slot_pages == 0 || slot_pages > NDB_MAX_SLOT_PAGES {
        return Err(format!("implausible slot page count {slot_pages}"));
    }
    // The 32-byte database header takes the first two slots of the first page.
    let slots = slot_pages * (NDB_SLOT_PAGE / NDB_SLOT_SIZE) - 2;
    let mut blobs = Vec::new();
    for i in 0..slots {
        let at = 32 + i * NDB_SLOT_SIZE;
        if e.u32(data, at)? != NDB_SLOT_MAGIC {
            return Err(format!("slot {i} has a bad magic"));
        }
        let package = e.u32(data, at + 4)?;
        if package == 0 {
            continue;
        }
        let block = usize_of(e.u32(data, at + 8)?)
            .checked_mul(NDB_BLOCK)
            .ok_or("block offset overflows")?;
        if e.u32(data, block)? != NDB_BLOB_MAGIC || e.u32(data, block + 4)? != package {
            return Err(format!("slot {i} points at no blob of package {package}"));
        }
        let length = usize_of(e.u32(data, block + 12)?);
        let blob = block
            .checked_add(16)
            .and_then(|start| data.get(start..start.checked_add(length)?))
            .ok_or_else(|| format!("the blob of package {package} runs past the end"))?;
        blobs.push(blob.to_vec());
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_their_first_bytes() {
        assert_eq!(detect(b"SQLite format 3\0rest"), Some(Format::Sqlite));
        assert_eq!(detect(b"RpmP\0\0\0\0"), Some(Format::Ndb));
        let mut bdb = vec![0u8; 64];
        bdb[12..16].copy_from_slice(&BDB_HASH_MAGIC.to_le_bytes());
        assert_eq!(detect(&bdb), Some(Format::BerkeleyDb));
        bdb[12..16].copy_from_slice(&BDB_HASH_MAGIC.to_be_bytes());
        assert_eq!(detect(&bdb), Some(Format::BerkeleyDb));
        assert_eq!(detect(b"garbage garbage garbage"), None);
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors_not_panics() {
        let mut bdb = vec![0u8; 4096];
        bdb[12..16].copy_from_slice(&BDB_HASH_MAGIC.to_le_bytes());
        bdb[20..24].copy_from_slice(&4096u32.to_le_bytes());
        bdb[25] = BDB_METADATA_PAGE;
        bdb[32..36].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(
            bdb_blobs(&bdb),
            Ok(Vec::new()),
            "pages past the end stop the walk"
        );
        for cut in [0, 13, 30, 200] {
            let _ = bdb_blobs(&bdb[..cut]);
        }
        let mut ndb = b"RpmP".to_vec();
        ndb.extend_from_slice(&[0; 8]);
        ndb.extend_from_slice(&1u32.to_le_bytes());
        ndb.resize(4096, 0);
        assert!(
            ndb_blobs(&ndb)
                .expect_err("slots without magic")
                .contains("magic")
        );
        for cut in [0, 5, 20, 40] {
            assert!(ndb_blobs(&ndb[..cut]).is_err());
        }
    }
}
