//! `pipeline_native`: the optional compiled decoder of inbound-audit event messages.
//!
//! One call decodes a whole batch of one partition's records into the columns a `Delta` is
//! made of, so Python never handles events one by one (and other threads run meanwhile: the
//! GIL is released). Decisions, reasons and detail text are those of
//! `pipeline/core/events.py` (the reference); `pipeline/core/decoding.py` wraps this.
//! `merge_counts` merges a counts cell's buffered inserts (`pipeline/core/prefix_counts.py`,
//! whose numpy merge is the reference).

mod decode;
mod format;
mod ip;
mod json;
mod merge;
mod series;

use decode::{Batch, Clock, Family, SESSION_KINDS};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use series::{Definitions, SeriesDef, SeriesRows};

/// A column's bytes in native order.
fn raw<T: Copy>(values: &[T]) -> &[u8] {
    // SAFETY: plain integers, floats and byte arrays, no padding; the bytes are copied right away.
    unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, std::mem::size_of_val(values)) }
}

/// One family's columns as bytes: (sec int64, metric uint8, node uint32, key, n int64), native order.
fn columns<'py, K: Copy>(py: Python<'py>, family: &Family<K>) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            PyBytes::new(py, raw(&family.sec)),
            PyBytes::new(py, raw(&family.metric)),
            PyBytes::new(py, raw(&family.node)),
            PyBytes::new(py, raw(&family.key)),
            PyBytes::new(py, raw(&family.n)),
        ],
    )
}

/// The series columns: (definitions, nodes, (kind uint8, series uint32, node uint32, ts float64,
/// count int64, key 16 bytes big-endian) as bytes, string keys, series end per record).
fn series_columns<'py>(
    py: Python<'py>,
    rows: &SeriesRows,
    defs: &[Py<PyAny>],
    ends: Vec<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let arrays = PyTuple::new(
        py,
        [
            PyBytes::new(py, raw(&rows.kind)),
            PyBytes::new(py, raw(&rows.series)),
            PyBytes::new(py, raw(&rows.node)),
            PyBytes::new(py, raw(&rows.ts)),
            PyBytes::new(py, raw(&rows.count)),
            PyBytes::new(py, raw(&rows.key)),
        ],
    )?;
    PyTuple::new(
        py,
        [
            PyList::new(py, defs)?.into_any(),
            PyList::new(py, &rows.nodes)?.into_any(),
            arrays.into_any(),
            PyList::new(py, &rows.text)?.into_any(),
            PyList::new(py, ends)?.into_any(),
        ],
    )
}

/// A Python `SeriesDef` (or None) as the decoder needs it, and the object itself.
fn series_def(found: Bound<'_, PyAny>) -> PyResult<Option<(SeriesDef, Py<PyAny>)>> {
    if found.is_none() {
        return Ok(None);
    }
    let definition = SeriesDef {
        type_name: found.getattr("type")?.extract()?,
        family: found.getattr("family")?.extract()?,
        interval: found.getattr("interval")?.extract()?,
        num_windows: found.getattr("num_windows")?.extract()?,
        prefix_len: found.getattr("prefix_len")?.extract()?,
    };
    Ok(Some((definition, found.unbind())))
}

/// Decode one partition's records.
///
/// `values[i]` (None for a tombstone) was written at `timestamps_ms[i]`, at offset `offsets[i]`;
/// `monitors` are `(size_s, count)`; `max_future_s` and its `:g` text bound `future_timestamp`.
/// Returns `(nodes, v4, v6, sessions, spans, rejections)`: v4/v6 are column bytes (see
/// `columns`; IPv4 keys uint32, IPv6 keys 16 bytes big-endian), sessions are
/// `(kind, node, family, address, service)`, spans `(offset, v4 end, v6 end, sessions end)` per
/// record, rejections `(record index, reason, detail, value)` with detail None for
/// `invalid_json` (orjson's wording is orjson's to give), and the series events (see
/// `series_columns`). `series(name)` gives a series' `SeriesDef` or None; it is called once
/// per name and batch, with the GIL taken back for it.
#[pyfunction]
#[pyo3(signature = (values, offsets, timestamps_ms, monitors, max_future_s, max_future_text, series=None))]
#[allow(clippy::too_many_arguments)]
fn decode_records<'py>(
    py: Python<'py>,
    values: Vec<Option<Bound<'py, PyBytes>>>,
    offsets: Vec<i64>,
    timestamps_ms: Vec<i64>,
    monitors: Vec<(i64, i64)>,
    max_future_s: f64,
    max_future_text: &str,
    series: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    if values.len() != offsets.len() || values.len() != timestamps_ms.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "values, offsets and timestamps_ms differ in length",
        ));
    }
    if monitors.iter().any(|&(size, count)| size < 1 || count < 1) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "monitors must be (size_s >= 1, count >= 1)",
        ));
    }
    let raws: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_ref().map(|b| b.as_bytes())).collect();
    // The bytes objects are immutable and `values` keeps them alive: other threads may run meanwhile.
    let mut def_objects: Vec<Py<PyAny>> = Vec::new();
    let mut lookup_error: Option<PyErr> = None;
    let batch = py.detach(|| {
        let mut definitions = Definitions::new(|name: &str| {
            let lookup = series.as_ref()?;
            Python::attach(|py| {
                match lookup
                    .call1(py, (name,))
                    .and_then(|found| series_def(found.into_bound(py)))
                {
                    Ok(Some((definition, object))) => {
                        def_objects.push(object);
                        Some(definition)
                    }
                    Ok(None) => None,
                    Err(error) => {
                        lookup_error.get_or_insert(error);
                        None
                    }
                }
            })
        });
        let mut batch = Batch::default();
        for (index, (raw, &ts_ms)) in raws.iter().zip(&timestamps_ms).enumerate() {
            batch.record(
                index,
                *raw,
                &Clock::new(ts_ms, &monitors, max_future_s),
                max_future_text,
                &mut definitions,
            );
        }
        batch
    });
    if let Some(error) = lookup_error {
        return Err(error);
    }
    let sessions = PyList::empty(py);
    for (kind, node, family, addr, service) in &batch.sessions {
        sessions.append((SESSION_KINDS[*kind], node, *family, *addr, service))?;
    }
    let spans = PyList::empty(py);
    for (&offset, &(v4, v6, s, _)) in offsets.iter().zip(&batch.ends) {
        spans.append((offset, v4, v6, s))?;
    }
    let rejections = PyList::empty(py);
    for (index, reason, detail, value) in &batch.rejections {
        rejections.append((*index, *reason, detail.as_deref(), PyBytes::new(py, value)))?;
    }
    PyTuple::new(
        py,
        [
            PyList::new(py, &batch.nodes)?.into_any(),
            columns(py, &batch.v4)?.into_any(),
            columns(py, &batch.v6)?.into_any(),
            sessions.into_any(),
            spans.into_any(),
            rejections.into_any(),
            series_columns(
                py,
                &batch.series,
                &def_objects,
                batch.ends.iter().map(|e| e.3).collect(),
            )?
            .into_any(),
        ],
    )
}

/// A counts cell merged (`PrefixCounts.compact`): `width` 4 (IPv4 `uint32`) or 16 (IPv6, 16
/// big-endian bytes); keys and counts (int64) in, (keys, counts, running sums) out, as bytes in
/// the arrays' own layout, written straight into the returned objects.
#[pyfunction]
fn merge_counts<'py>(
    py: Python<'py>,
    width: usize,
    keys: &[u8],
    vals: &[u8],
    pending_keys: &[u8],
    pending_vals: &[u8],
) -> PyResult<Bound<'py, PyTuple>> {
    if !(width == 4 || width == 16)
        || !keys.len().is_multiple_of(width)
        || !pending_keys.len().is_multiple_of(width)
        || keys.len() / width * 8 != vals.len()
        || pending_keys.len() / width * 8 != pending_vals.len()
    {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "merge_counts: width must be 4 or 16, with one 8-byte count per key",
        ));
    }
    let pending_vals: Vec<i64> = pending_vals
        .chunks_exact(8)
        .map(|count| i64::from_ne_bytes(count.try_into().expect("8-byte count")))
        .collect();
    if width == 4 {
        merged::<u32>(py, keys, vals, pending_keys, &pending_vals)
    } else {
        merged::<u128>(py, keys, vals, pending_keys, &pending_vals)
    }
}

fn merged<'py, K: merge::Key + Send>(
    py: Python<'py>,
    keys: &[u8],
    vals: &[u8],
    pending_keys: &[u8],
    pending_vals: &[i64],
) -> PyResult<Bound<'py, PyTuple>> {
    let plan = py.detach(|| merge::plan::<K>(keys, pending_keys, pending_vals));
    let mut merged_vals: Option<Bound<'py, PyBytes>> = None;
    let merged_keys = PyBytes::new_with(py, plan.len * K::WIDTH, |out_keys| {
        merged_vals = Some(PyBytes::new_with(py, plan.len * 8, |out_vals| {
            merge::fill(&plan, keys, vals, out_keys, out_vals);
            Ok(())
        })?);
        Ok(())
    })?;
    let merged_vals = merged_vals.expect("filled with the keys");
    let cum = PyBytes::new_with(py, (plan.len + 1) * 8, |out| {
        merge::running_sums(merged_vals.as_bytes(), out);
        Ok(())
    })?;
    PyTuple::new(py, [merged_keys, merged_vals, cum])
}

/// Python's `format(value, "g")`, exposed so tests can pin the detail text's number format.
#[pyfunction]
fn format_g(value: f64) -> String {
    format::py_g(value)
}

#[pymodule]
fn pipeline_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_records, m)?)?;
    m.add_function(wrap_pyfunction!(format_g, m)?)?;
    m.add_function(wrap_pyfunction!(merge_counts, m)?)?;
    m.add("MAX_BATCH_EVENTS", decode::MAX_BATCH_EVENTS)?;
    m.add("MAX_MESSAGE_BYTES", decode::MAX_MESSAGE_BYTES)?;
    m.add("MAX_EVENT_N", decode::MAX_EVENT_N as i64)?;
    m.add("MAX_KEPT_DEPTH", json::MAX_KEPT_DEPTH)?;
    Ok(())
}
