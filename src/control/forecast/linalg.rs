//! The small dense linear algebra the forecasters need: normal equations solved by
//! Cholesky, least squares without an intercept column of its own.

/// Solve A x = b for a symmetric positive definite A by Cholesky; None when A is not
/// (numerically) positive definite.
pub fn solve_spd(a: Vec<Vec<f64>>, b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let scale = (0..n).map(|i| a[i][i].abs()).fold(0.0, f64::max).max(1.0);
    let mut l = vec![vec![0.0f64; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|m| l[i][m] * l[j][m]).sum();
            if i == j {
                let d = a[i][i] - s;
                if d <= 1e-12 * scale {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    // L z = b, then Lᵀ x = z.
    let mut z = vec![0.0f64; n];
    for i in 0..n {
        z[i] = (b[i] - (0..i).map(|m| l[i][m] * z[m]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0f64; n];
    for i in (0..n).rev() {
        x[i] = (z[i] - (i + 1..n).map(|m| l[m][i] * x[m]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

/// Ordinary least squares of `y` on the rows of `x` (each row the regressors of one
/// observation), by the normal equations. None when they are singular.
pub fn ols(x: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let k = x.first()?.len();
    let mut xtx = vec![vec![0.0f64; k]; k];
    let mut xty = vec![0.0f64; k];
    for (row, &v) in x.iter().zip(y) {
        for a in 0..k {
            xty[a] += row[a] * v;
            for b in 0..k {
                xtx[a][b] += row[a] * row[b];
            }
        }
    }
    solve_spd(xtx, xty)
}
